"""The Airflow UI as a data engineer uses it, in headless Chromium (Playwright): log in to
`airflow standalone` (what `make airflow` runs), see one DAG per configured district,
trigger clever_sync_demo with params from the trigger form, and wait for it to succeed;
its build then schedules the rollover report (asset clever_marts). Screenshots go to
test-artifacts/ui/ (or $CLEVER_TEST_ARTIFACTS/ui)."""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from clever.paths import REPO_ROOT
from clever_devkit.pg_local import free_port
from clever_devkit.runner import airflow_env
from clever_devkit.system_tools import find_or_install
from clever_devkit.ui_walkthrough import running_airflow, walk_through
from tests.conftest import DEMO_TOKEN

pytestmark = pytest.mark.ui

ARTIFACTS = Path(os.environ.get("CLEVER_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts") / "ui"
DISTRICTS = {"demo": "Certification ISD", "springfield": "Springfield Public Schools"}


def test_trigger_a_district_sync_from_the_ui_with_params(tmp_path, warehouse_url, simulator):
    chromium = find_or_install("chromium")
    home = tmp_path / "airflow"
    home.mkdir()
    password = secrets.token_urlsafe(12)
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps({"admin": password}))
    districts = tmp_path / "districts.yml"
    districts.write_text(yaml.safe_dump({  # manual only: no scheduled run competes with the triggered one
        "defaults": {"schedule": None, "page_size": 50},
        "districts": [{"slug": slug, "name": name} for slug, name in DISTRICTS.items()]}))
    env = airflow_env({
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "CLEVER_DISTRICTS_FILE": str(districts),
        "CLEVER_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "AIRFLOW_CONN_CLEVER_WAREHOUSE": warehouse_url,
        "AIRFLOW_CONN_CLEVER_DEMO": json.dumps(
            {"conn_type": "http", "host": simulator.base_url, "password": DEMO_TOKEN}),
        "AIRFLOW__CORE__PARALLELISM": "4",  # LocalExecutor forks one worker per slot
    })
    run_id = f"ui_test_{uuid.uuid4().hex[:8]}"
    endpoints = ["districts", "schools", "users", "sections", "terms"]  # courses left out in the form

    with running_airflow(free_port(), env, ARTIFACTS / "airflow_standalone.log") as base_url:
        seen = walk_through(chromium, base_url, password, "clever_sync_demo",
                            {"full_refresh": True, "endpoints": endpoints}, run_id, ARTIFACTS,
                            expected_dags={f"clever_sync_{slug}" for slug in DISTRICTS})
        assert seen.run_state == "success", f"run {run_id} ended {seen.run_state}; see {ARTIFACTS}"
        # the build's asset event schedules the rollover report for the district just built
        report = tmp_path / "artifacts" / "reports" / "rollover_demo.html"
        deadline = time.monotonic() + 300
        while not report.exists() and time.monotonic() < deadline:
            time.sleep(2)

    assert [d for d in seen.dag_ids if d.startswith("clever_sync_")] == sorted(f"clever_sync_{s}" for s in DISTRICTS)
    assert all(path.stat().st_size > 10_000 for path in seen.screenshots)
    assert "Rollover report: Certification ISD" in report.read_text(encoding="utf-8")

    with psycopg.connect(warehouse_url) as conn:
        run = conn.execute("SELECT sync_run_id, status, params FROM clever_landing.sync_runs "
                           "WHERE external_run_id = %s", (run_id,)).fetchone()
        assert run is not None and run[1] == "completed"
        assert run[2]["full_refresh"] is True and run[2]["endpoints"] == endpoints
        extracted = [r[0] for r in conn.execute(
            "SELECT endpoint FROM clever_landing.endpoint_runs WHERE sync_run_id = %s AND status = 'completed' "
            "ORDER BY endpoint", (run[0],))]
        assert extracted == sorted(endpoints)
        assert conn.execute("SELECT status FROM clever_landing.run_summaries WHERE sync_run_id = %s",
                            (run[0],)).fetchone() == ("succeeded",)
