"""End-to-end fixtures: real `airflow dags test` runs of the district DAGs against the
simulator and a throwaway warehouse database."""

from __future__ import annotations

import itertools
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from clever.runner import airflow_env, ensure_metadata_db, run_dag
from tests.conftest import DEMO_TOKEN

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
        # Each run needs its own logical date; spread them a minute apart.
        when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=next(_logical_dates))
        result = run_dag(f"clever_sync_{slug}", conf=conf, env=dict(self.env), logical_date=when, capture=True)
        if expect_success and result.returncode != 0:
            pytest.fail(f"sync of {slug} failed:\n{result.stdout[-6000:]}")
        if not expect_success and result.returncode == 0:
            pytest.fail(f"sync of {slug} unexpectedly succeeded:\n{result.stdout[-3000:]}")
        return result.stdout

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.warehouse_url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: tuple = ()):
        return self.query(sql, params)[0][0]


def write_districts_file(path: Path, districts: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"defaults": {"page_size": 25}, "districts": districts}))
    return path


def clever_connection(simulator, token: str) -> str:
    return json.dumps({"conn_type": "http", "host": simulator.base_url, "password": token})


@pytest.fixture
def airflow(airflow_home, warehouse_url, simulator, tmp_path) -> Airflow:
    env = airflow_env({
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW_CONN_CLEVER_WAREHOUSE": warehouse_url,
        "AIRFLOW_CONN_CLEVER_DEMO": clever_connection(simulator, DEMO_TOKEN),
        "CLEVER_DISTRICTS_FILE": str(write_districts_file(tmp_path / "districts.yml", [{"slug": "demo"}])),
        "CLEVER_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    })
    return Airflow(env, warehouse_url)
