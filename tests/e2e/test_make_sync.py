"""`make sync` as a user sees it (``python -m clever_devkit.runner sync``): a line per finished
task, the run summary and a last line, Airflow's log in a file; SIGTERM stops a run
within seconds, failing the running step, archiving nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.e2e.conftest import clever_connection, write_districts_file
from tests.helpers import Hostile, send_trickle

pytestmark = pytest.mark.e2e
TASKS = ("start_run", "extract", "validate", "approve", "build", "summarize")


def runner_env(airflow_home, warehouse_url, tmp_path, connection: str, options: dict | None = None) -> dict[str, str]:
    districts = write_districts_file(tmp_path / "districts.yml", [{"slug": "demo", **(options or {})}])
    return {**os.environ, "AIRFLOW_HOME": str(airflow_home), "AIRFLOW_CONN_CLEVER_WAREHOUSE": warehouse_url,
            "AIRFLOW_CONN_CLEVER_DEMO": connection, "CLEVER_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
            "CLEVER_DISTRICTS_FILE": str(districts)}


def log_path(output: str):
    found = re.search(r"Airflow's log: (\S+\.log)", output)
    assert found, output
    return found.group(1)


def test_make_sync_prints_each_task_the_summary_and_a_last_line(airflow_home, warehouse_url, simulator, tmp_path):
    from tests.conftest import DEMO_TOKEN

    env = runner_env(airflow_home, warehouse_url, tmp_path, clever_connection(simulator, DEMO_TOKEN))
    result = subprocess.run([sys.executable, "-m", "clever_devkit.runner", "sync", "--district", "demo"], env=env,
                            check=False,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    for task in TASKS:
        assert sum(1 for line in lines if re.match(rf"\s+{task}\s+success in [\d.]+ s$", line)) == 1, result.stdout
    assert "Clever sync run" in result.stdout and "district 'demo'" in result.stdout  # the run summary
    assert re.fullmatch(r"Sync of district 'demo' succeeded in \d+ s\.", lines[-1]), lines[-1]
    assert len(lines) < 60, "Airflow's own log goes to the file, not the console"
    with open(log_path(result.stdout)) as log:
        assert "[DAG TEST]" in log.read()


def stall(request) -> None:
    send_trickle(request, interval=0.5, count=600)


def assert_nothing_approved(warehouse_url: str) -> None:
    import psycopg

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        assert conn.execute("SELECT status FROM clever_landing.sync_runs WHERE district_slug = 'demo'").fetchall() \
            == [("failed",)]
        assert conn.execute("SELECT count(*) FROM clever_landing.approved_extractions").fetchone()[0] == 0


def test_a_task_past_its_time_limit_fails_the_run_and_archives_nothing(airflow_home, warehouse_url, tmp_path):
    server = Hostile(stall)
    try:
        env = runner_env(airflow_home, warehouse_url, tmp_path, clever_connection(server, "stalled-token-0123456789"),
                         {"task_timeout_minutes": {"extract": 0.2}, "extract_retries": 0})
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "clever_devkit.runner", "sync", "--district", "demo"], env=env,
                                check=False, capture_output=True, text=True, timeout=600)
    finally:
        server.close()
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"\s+extract\s+failed in (1[2-9]|[2-5]\d)\.\d s", result.stdout), result.stdout
    assert "Sync of district 'demo' FAILED" in result.stderr
    assert time.monotonic() - started < 300
    log = open(log_path(result.stdout)).read()
    assert "AirflowTaskTimeout" in log
    assert_nothing_approved(warehouse_url)


def test_sigterm_stops_make_sync_within_seconds_and_archives_nothing(airflow_home, warehouse_url, tmp_path):
    server = Hostile(stall)
    try:
        env = runner_env(airflow_home, warehouse_url, tmp_path,
                         clever_connection(server, "stalled-token-0123456789"))
        process = subprocess.Popen([sys.executable, "-m", "clever_devkit.runner", "sync", "--district", "demo"],
                                   env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        console: list[str] = []
        extracting = threading.Event()

        def read() -> None:
            for line in process.stdout:
                console.append(line)
                if re.match(r"\s+start_run\s+success", line):
                    extracting.set()

        threading.Thread(target=read, daemon=True).start()
        assert extracting.wait(300), "".join(console)
        time.sleep(3)  # extract is reading the stalled pages
        assert process.poll() is None
        stopped = time.monotonic()
        os.killpg(process.pid, signal.SIGTERM)  # as a terminal or a service manager does
        process.wait(timeout=60)
        took = time.monotonic() - stopped
        errors = process.stderr.read()
        assert took < 15, f"stopped after {took:.1f} s"
        assert process.returncode == 128 + signal.SIGTERM, errors
        assert "STOPPED by SIGTERM" in errors and "the running step failed" in errors, errors
        log = open(log_path("".join(console) + errors)).read()
        assert "extract stopped by SIGTERM" in log
    finally:
        server.close()
    import psutil

    assert_nothing_approved(warehouse_url)
    assert not [p for p in psutil.process_iter(["cmdline"]) if "clever_sync_demo" in " ".join(p.info["cmdline"] or [])
                and _environ(p).get("AIRFLOW_HOME") == str(airflow_home)], "an Airflow process was left behind"


def _environ(process) -> dict[str, str]:
    import psutil

    try:
        return process.environ()
    except (psutil.Error, OSError):
        return {}
