"""End-to-end fixtures: real `airflow dags test` runs of the district DAGs against the
simulator and a throwaway warehouse database."""

from __future__ import annotations

import collections
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from clever.dbt_runner import ARTIFACTS_DIR, target_path
from clever_devkit.runner import BIN_DIR, airflow_env, ensure_metadata_db, run_dag
from clever_devkit.simulator import CleverSimulator
from tests.conftest import DEMO_TOKEN, copy_sample_district, database

_logical_dates = itertools.count()


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    """One Airflow metadata DB for the session (migrating it takes a while)."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = airflow_env({**os.environ, "AIRFLOW_HOME": str(home)})
    ensure_metadata_db(env)
    return home


class Airflow:
    """Runs a district DAG for real and reads the warehouse it wrote."""

    def __init__(self, env: dict[str, str], warehouse_url: str):
        self.env = env
        self.warehouse_url = warehouse_url

    def sync(self, slug: str = "demo", conf: dict | None = None, expect_success: bool = True) -> str:
        return self.run(f"clever_sync_{slug}", conf, expect_success)

    def run(self, dag_id: str, conf: dict | None = None, expect_success: bool = True) -> str:
        """One `airflow dags test` run of ``dag_id``; its output."""
        # Each run needs its own logical date; spread them a minute apart.
        when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=next(_logical_dates))
        result = run_dag(dag_id, conf=conf, env=dict(self.env), logical_date=when, capture=True)
        if expect_success and result.returncode != 0:
            pytest.fail(f"{dag_id} failed:\n{result.stdout[-6000:]}")
        if not expect_success and result.returncode == 0:
            pytest.fail(f"{dag_id} unexpectedly succeeded:\n{result.stdout[-3000:]}")
        return result.stdout

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.warehouse_url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: tuple = ()):
        return self.query(sql, params)[0][0]


def write_districts_file(path: Path, districts: list[dict]) -> Path:
    # Small pages exercise paging; short back-offs keep failure tests quick.
    defaults = {"page_size": 25, "http_max_attempts": 3, "http_backoff_max_seconds": 0.2,
                "extract_retries": 1, "extract_retry_delay_seconds": 1}
    path.write_text(yaml.safe_dump({"defaults": defaults, "districts": districts}))
    return path


def clever_connection(simulator, token: str) -> str:
    return json.dumps({"conn_type": "http", "host": simulator.base_url, "password": token})


# The embedded-warehouse fallback when a test stores its warehouse connection in the
# metadata DB: nothing listens there, so a run that wrongly fell back would fail.
UNREACHABLE_WAREHOUSE = "postgresql://nobody@127.0.0.1:9/must_not_be_used"


# Per warehouse database name: where earlier tests' Airflow runs keep dbt's parse (test
# databases reuse names, tests.conftest.database). A test's own artifacts directory starts
# with a copy of the last one, so its first build parses only what differs, not the whole project.
_DBT_PARSES: dict[str, list[Path]] = collections.defaultdict(list)


def _start_from_last_dbt_parse(warehouse_url: str, artifacts: Path) -> None:
    parse = artifacts / target_path().relative_to(ARTIFACTS_DIR) / "partial_parse.msgpack"
    parses = _DBT_PARSES[conninfo_to_dict(warehouse_url)["dbname"]]
    last = next((p for p in reversed(parses) if p.exists() and p != parse), None)  # a test that built
    if last is not None and not parse.exists():
        parse.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(last, parse)
    parses.append(parse)


def make_airflow(airflow_home: Path, warehouse_url: str, tmp_path: Path, simulator,
                 tokens: dict[str, str], district_options: dict | None = None,
                 per_district: dict[str, dict] | None = None, warehouse_in_environment: bool = True) -> Airflow:
    """Airflow set up for the given districts ({slug: token}) served by ``simulator``.

    ``per_district`` adds options to single districts ({slug: {"api_version": "v3.1"}}).
    With ``warehouse_in_environment=False`` the warehouse is not given as
    AIRFLOW_CONN_CLEVER_WAREHOUSE: the test stores it in the metadata DB instead
    (``stored_warehouse_connection``)."""
    districts = [{"slug": slug, **(district_options or {}), **(per_district or {}).get(slug, {})}
                 for slug in tokens]
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW_CONN_CLEVER_WAREHOUSE": warehouse_url,
        "CLEVER_DISTRICTS_FILE": str(write_districts_file(tmp_path / "districts.yml", districts)),
        "CLEVER_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }
    _start_from_last_dbt_parse(warehouse_url, tmp_path / "artifacts")
    if not warehouse_in_environment:
        del env["AIRFLOW_CONN_CLEVER_WAREHOUSE"]
        env["CLEVER_EMBEDDED_WAREHOUSE_URL"] = UNREACHABLE_WAREHOUSE
    for slug, token in tokens.items():
        env[f"AIRFLOW_CONN_CLEVER_{slug.upper()}"] = clever_connection(simulator, token)
    return Airflow(airflow_env(env), warehouse_url)


@pytest.fixture
def stored_warehouse_connection(airflow_home, warehouse_url) -> Iterator[None]:
    """The warehouse as a `clever_warehouse` connection in the session's metadata DB
    (as `airflow connections add` or the UI store it), removed afterwards."""
    env = airflow_env({k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_CLEVER_WAREHOUSE"}
                      | {"AIRFLOW_HOME": str(airflow_home)})
    airflow = [str(BIN_DIR / "airflow"), "connections"]
    subprocess.run([*airflow, "add", "clever_warehouse", "--conn-uri", warehouse_url], env=env, check=True,
                   capture_output=True)
    try:
        yield
    finally:
        subprocess.run([*airflow, "delete", "clever_warehouse"], env=env, check=False, capture_output=True)


@pytest.fixture
def airflow(airflow_home, warehouse_url, simulator, tmp_path) -> Airflow:
    return make_airflow(airflow_home, warehouse_url, tmp_path, simulator, {"demo": DEMO_TOKEN})


@pytest.fixture(scope="session")
def synced_template(pg_server, airflow_home, tmp_path_factory) -> Iterator[str]:
    """A database holding the warehouse after one clean `airflow dags test` sync of the
    sample district. Tests whose story starts after that sync copy it (CREATE DATABASE ...
    TEMPLATE, a file copy) instead of running the same first sync again."""
    base = tmp_path_factory.mktemp("synced_template")
    district = copy_sample_district(base / "district")
    with database(pg_server, prefix="synced") as url, CleverSimulator({"demo": (DEMO_TOKEN, district)}) as sim:
        make_airflow(airflow_home, url, base, sim, {"demo": DEMO_TOKEN}).sync()
        sim.stop()
        yield url.rpartition("/")[2]


@pytest.fixture
def synced_warehouse_url(pg_server, synced_template) -> Iterator[str]:
    """A fresh copy of synced_template for one test, dropped afterwards."""
    with database(pg_server, template=synced_template) as url:
        yield url


@pytest.fixture
def synced_airflow(airflow_home, synced_warehouse_url, simulator, tmp_path) -> Airflow:
    """As `airflow`, after a first clean sync of the (unchanged) sample district."""
    return make_airflow(airflow_home, synced_warehouse_url, tmp_path, simulator, {"demo": DEMO_TOKEN})
