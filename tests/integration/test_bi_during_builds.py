"""BI can query every mart and report at any moment: during a district's build, during a
deploy of the dbt project, and after a deploy killed half-way. A run killed after its
build is closed by the next run, whose summary reports what the killed one wrote."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from clever.config import get_district
from clever.dbt_runner import ARTIFACTS_DIR
from clever.paths import REPO_ROOT
from clever.summary import summarize
from tests.conftest import DEMO_TOKEN
from tests.helpers import land_and_build, load_records, write_records

BI_SCHEMAS = ("clever_marts", "clever_reports")


class BiReader(threading.Thread):
    """Reads every BI relation over and over, as a dashboard would, noting each failure."""

    def __init__(self, url: str, relations: list[str]):
        super().__init__(daemon=True)
        self.url, self.relations = url, relations
        self.rounds, self.failures = 0, []
        self._stop_reading = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop_reading.is_set():
                for relation in self.relations:
                    try:
                        conn.execute(f"SELECT * FROM {relation} LIMIT 1").fetchall()
                    except psycopg.Error as exc:
                        self.failures.append(f"{relation}: {str(exc).splitlines()[0]}")
                self.rounds += 1

    def stop(self) -> BiReader:
        self._stop_reading.set()
        self.join(timeout=60)
        return self


def bi_relations(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [f"{schema}.{name}" for schema, name in conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'v', 'm') ORDER BY 1, 2", (list(BI_SCHEMAS),))]


def _views_replaced(log: Path, offset: int) -> int:
    if not log.exists():
        return 0
    with log.open("rb") as text:
        text.seek(offset)
        return text.read().count(b"OK created sql view model")


def forget_deployment(url: str) -> None:
    """As after an upgrade: the next build must deploy the dbt project again."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM clever_landing.dbt_deployments")


def test_bi_reads_every_mart_during_builds_and_after_a_killed_deploy(warehouse_url, simulator, district_dir):
    url, district = warehouse_url, get_district("demo")
    sync = functools.partial(land_and_build, url, district, simulator.base_url, DEMO_TOKEN)
    summarize(url, sync(), time.time())
    relations = bi_relations(url)
    assert {"clever_marts.dim_users", "clever_marts.fct_enrollments", "clever_reports.rpt_sync_runs"} <= set(relations)

    reader = BiReader(url, relations)
    reader.start()
    # Day 2, a user unshared: a district build, whose run is killed before its summary.
    users = load_records(district_dir, "v3.0", "users")
    write_records(district_dir, "v3.0", "users", [u for u in users if u is not users[-1]])
    killed = sync()

    # A deploy (as after an upgrade) killed half-way, as a worker lost mid-build: every
    # view it had replaced, and every one it had not reached, still answers.
    forget_deployment(url)
    log = ARTIFACTS_DIR / "dbt_logs" / "dbt.log"
    offset = log.stat().st_size if log.exists() else 0
    deploy = subprocess.Popen([sys.executable, "-m", "clever.dbt_runner", "deploy", "--url", url], cwd=REPO_ROOT,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "plugins")},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while _views_replaced(log, offset) < 5:
        assert deploy.poll() is None, "the deploy ended before it could be killed"
        assert time.monotonic() < deadline, "the deploy replaced no view in 5 minutes"
        time.sleep(0.2)
    os.killpg(deploy.pid, signal.SIGKILL)
    deploy.wait()
    assert bi_relations(url) == relations

    # Day 3, unchanged: its build deploys the project whole (read meanwhile too); the
    # killed run is closed, and this run reports the archive that run's build wrote.
    day3 = sync()
    reader.stop()
    assert reader.rounds > 20
    assert reader.failures == [], reader.failures[:10]
    assert bi_relations(url) == relations
    summary = summarize(url, day3, time.time())
    assert summary["history"]["users"]["archived"] == 1
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT status, error FROM clever_landing.sync_runs WHERE sync_run_id = %s",
                            (killed,)).fetchone() == (
            "failed", "abandoned: the run stopped after its extraction, in validate, approve or build")
