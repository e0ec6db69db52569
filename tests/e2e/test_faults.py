"""Faults survived with nothing lost, through real Airflow runs against the simulator.

After every run the marts equal either the state before it or the correct new state,
and no district token appears in any captured log line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DEMO_TOKEN
from tests.e2e.conftest import make_airflow
from tests.e2e.test_isolation_and_failures import mart_state
from tests.helpers import load_records, write_records

pytestmark = pytest.mark.e2e


def history_size(airflow) -> int:
    return sum(airflow.scalar(f"SELECT count(*) FROM clever_snapshots.snap_clever__{t}")
               for t in ("districts", "schools", "users", "sections", "terms", "courses", "section_enrollments"))


def assert_no_token_logged(airflow, output: str) -> None:
    assert DEMO_TOKEN not in output
    for log_file in Path(airflow.env["AIRFLOW_HOME"], "logs").rglob("*"):
        if log_file.is_file():
            assert DEMO_TOKEN not in log_file.read_text(errors="replace"), log_file


def test_transient_faults_are_retried_to_the_same_result_as_a_clean_run(
        airflow_home, synced_warehouse_url, tmp_path, simulator):
    airflow = make_airflow(airflow_home, synced_warehouse_url, tmp_path, simulator, {"demo": DEMO_TOKEN},
                           district_options={"http_max_attempts": 10})
    clean, clean_history = mart_state(airflow, "demo"), history_size(airflow)
    simulator.set_faults(rate_limit_probability=0.3, retry_after=0.2, server_error_probability=0.2,
                         drop_connection_probability=0.05)
    output = airflow.sync()
    stats = simulator.stats()["by_status"]
    assert int(stats.get("429", 0)) > 0 and int(stats.get("503", 0)) > 0
    assert mart_state(airflow, "demo") == clean
    assert history_size(airflow) == clean_history, "a faulty but complete run must change nothing"
    simulator.set_faults(truncated_page_endpoint="users", max_faults=1)
    airflow.sync()
    assert int(simulator.stats()["by_status"].get("truncated", 0)) == 1
    assert mart_state(airflow, "demo") == clean and history_size(airflow) == clean_history
    assert_no_token_logged(airflow, output)


@pytest.mark.parametrize(("fault", "cause"), [
    ({"fail_endpoint": "terms"}, "HTTP 500"),
    ({"malformed_json_endpoint": "courses"}, "malformed JSON"),
    ({"truncated_page_endpoint": "schools"}, "ChunkedEncodingError"),
])
def test_persistent_faults_fail_naming_district_endpoint_and_cause(
        synced_airflow, simulator, district_dir, fault, cause):
    airflow = synced_airflow  # after a clean first sync
    before = mart_state(airflow, "demo")
    users = load_records(district_dir, "v3.0", "users")
    write_records(district_dir, "v3.0", "users", users[:-3])  # a change that must not land
    simulator.set_faults(**fault)
    output = airflow.sync(expect_success=False)
    endpoint = next(iter(fault.values()))
    assert f"endpoint {endpoint!r}" in output and "'demo'" in output and cause in output
    assert mart_state(airflow, "demo") == before
    assert airflow.scalar("SELECT status FROM clever_landing.sync_runs ORDER BY sync_run_id DESC LIMIT 1") == "failed"
    assert_no_token_logged(airflow, output)


def test_revoked_token_fails_at_once_without_leaking_it(synced_airflow, simulator):
    airflow = synced_airflow  # after a clean first sync
    before = mart_state(airflow, "demo")
    simulator.reset()
    simulator.revoke("demo")
    output = airflow.sync(expect_success=False)
    assert "HTTP 401" in output and "rejected this district's token" in output
    assert "in the Airflow connection clever_demo" in output
    assert mart_state(airflow, "demo") == before
    # one request per endpoint: an auth failure is neither retried by the client nor by Airflow
    assert simulator.stats()["by_status"].get("401") == 6
    assert_no_token_logged(airflow, output)


def test_unsharing_every_user_trips_the_guard_until_allowed(synced_airflow, district_dir):
    airflow = synced_airflow  # after a clean first sync
    before = mart_state(airflow, "demo")
    write_records(district_dir, "v3.0", "users", [])
    for section in (sections := load_records(district_dir, "v3.0", "sections")):
        section["students"], section["teachers"] = [], []
        section.pop("teacher", None)
    write_records(district_dir, "v3.0", "sections", sections)
    output = airflow.sync(expect_success=False)
    assert "mass-archive guard tripped" in output and "users: would archive 149 of 149 active" in output
    assert "allow_mass_archive=true" in output
    assert mart_state(airflow, "demo") == before
    tripped = airflow.query("SELECT data_type, holds FROM clever_landing.guard_checks WHERE tripped ORDER BY 1")
    # Every section's roster emptied is a change of every section: Clever's 75% hold too.
    assert tripped == [("enrollments", ["archive"]), ("sections", ["change"]), ("users", ["archive"])]
    assert airflow.scalar("SELECT count(*) FROM clever_landing.approved_extractions "
                          "WHERE sync_run_id = (SELECT max(sync_run_id) FROM clever_landing.sync_runs)") == 0

    airflow.sync(conf={"allow_mass_archive": True})
    after = mart_state(airflow, "demo")
    assert after["users"] == {(cid, True) for cid, _ in before["users"]}
    assert after["sections"] == before["sections"]
    assert airflow.scalar("SELECT count(*) FROM clever_landing.guard_checks WHERE overridden") == 3


def test_run_killed_between_extraction_and_snapshot_changes_nothing(synced_airflow, district_dir, simulator):
    airflow = synced_airflow  # after a clean first sync
    before = mart_state(airflow, "demo")
    users = load_records(district_dir, "v3.0", "users")
    write_records(district_dir, "v3.0", "users", users[:-5])
    # A worker that extracts, then dies (SIGKILL) before validation and approval.
    simulator.set_faults(slow_seconds=0.5, slow_probability=1.0)
    script = (
        "import json, sys\n"
        "from clever import pipeline, runs\n"
        "from clever.config import load_districts\n"
        "district = load_districts()[0]\n"
        "run = runs.start_run(sys.argv[1], district, None)\n"
        "for endpoint in district.endpoints:\n"
        "    pipeline.extract(sys.argv[1], district, run, endpoint, sys.argv[2], sys.argv[3])\n"
        "print('extracted', flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", script, airflow.warehouse_url, simulator.base_url, DEMO_TOKEN],
                              env=airflow.env, stdout=subprocess.PIPE, text=True)
    time.sleep(3)  # mid-extraction: the slow simulator keeps it busy
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    simulator.reset()
    killed = airflow.query("SELECT sync_run_id, status FROM clever_landing.sync_runs ORDER BY sync_run_id")[-1]
    assert killed[1] == "started"
    assert mart_state(airflow, "demo") == before

    airflow.sync()  # the next run closes the dead one and lands the new state
    assert airflow.query("SELECT status FROM clever_landing.sync_runs WHERE sync_run_id = %s",
                         (killed[0],)) == [("failed",)]
    assert airflow.scalar("SELECT count(*) FROM clever_landing.approved_extractions WHERE sync_run_id = %s",
                          (killed[0],)) == 0
    archived = {cid for cid, archived in mart_state(airflow, "demo")["users"] if archived}
    assert archived == {u["id"] for u in users[-5:]}


HOSTILE = {
    "first": "Robert'); DROP TABLE clever_marts.dim_users;--",
    "middle": 'back\\slash "quoted" \t tab \n newline \\N \\.',
    "last": "Ñuñez-李-Алексей-محمد-김민준-Ελένη-👩🏽‍🏫",
}


def test_hostile_field_values_reach_the_marts_byte_for_byte(airflow, district_dir):
    users = load_records(district_dir, "v3.0", "users")
    target = users[0]
    target["name"] = dict(HOSTILE)
    target["email"] = "x" * 50_000 + "@example.org"
    write_records(district_dir, "v3.0", "users", users)
    airflow.sync()
    row = airflow.query("SELECT first_name, middle_name, last_name, email FROM clever_marts.dim_users "
                        "WHERE clever_id = %s", (target["id"],))[0]
    assert row == (HOSTILE["first"], HOSTILE["middle"], HOSTILE["last"], target["email"])
    assert airflow.scalar("SELECT count(*) FROM clever_marts.dim_users") == len(users)
