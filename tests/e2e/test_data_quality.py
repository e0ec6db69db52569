"""The Great Expectations gate through real Airflow runs: a record that breaks a rule
Clever guarantees is quarantined, never archived; a systemic failure stops the run."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.e2e.test_isolation_and_failures import mart_state
from tests.helpers import load_records, write_records

pytestmark = pytest.mark.e2e


def user_row(airflow, clever_id: str):
    rows = airflow.query("SELECT email, is_archived FROM clever_marts.dim_users WHERE clever_id = %s", (clever_id,))
    return rows[0] if rows else None


def test_invalid_records_are_quarantined_not_archived_and_a_systemic_failure_stops_the_run(
        synced_airflow, district_dir):
    airflow = synced_airflow  # after a clean first sync
    users = load_records(district_dir, "v3.0", "users")
    student = next(u for u in users if "student" in u["roles"] and u.get("email"))
    history_before = airflow.scalar("SELECT count(*) FROM clever_snapshots.snap_clever__users")

    # Day 2: Clever sends the student without its guaranteed name (and a new email), and a
    # brand-new user without a district.
    broken = copy.deepcopy(student)
    del broken["name"]
    broken["email"] = "new.address@example.org"
    newcomer = {**copy.deepcopy(student), "id": "f" * 24}
    del newcomer["district"]
    write_records(district_dir, "v3.0", "users", [broken if u is student else u for u in users] + [newcomer])
    output = airflow.sync()
    assert user_row(airflow, student["id"]) == (student["email"], False), "kept at its last clean version"
    assert user_row(airflow, newcomer["id"]) is None, "a record never seen clean is not added"
    assert airflow.scalar("SELECT count(*) FROM clever_snapshots.snap_clever__users") == history_before
    assert "quarantined 1 record(s): users: guaranteed field name is present" in output
    assert "quarantined 1 record(s): users: guaranteed field district is present" in output
    summary = airflow.scalar("SELECT summary FROM clever_landing.run_summaries ORDER BY sync_run_id DESC LIMIT 1")
    docs = Path(summary["data_docs"])
    assert docs.name == "index.html" and docs.exists() and f"data docs: {docs}" in output
    assert summary["quarantined"] == {
        "users: guaranteed field district is present, not null and a JSON string": 1,
        "users: guaranteed field name is present, not null and a JSON object": 1}

    # Day 3: Clever fixes the record; its real change lands.
    fixed = {**student, "email": "new.address@example.org"}
    write_records(district_dir, "v3.0", "users", [fixed if u is student else u for u in users])
    airflow.sync()
    assert user_row(airflow, student["id"]) == ("new.address@example.org", False)
    before = mart_state(airflow, "demo")

    # Day 4: a schema break in every section stops the run before anything is approved.
    sections = load_records(district_dir, "v3.0", "sections")
    for section in sections:
        section["school"] = {"id": section["school"]}
    write_records(district_dir, "v3.0", "sections", sections)
    write_records(district_dir, "v3.0", "users", users[:-10])  # a change that must not land
    output = airflow.sync(expect_success=False)
    assert "validation failed; nothing will be approved or archived" in output
    assert f"sections: {len(sections)} of {len(sections)} records quarantined" in output
    assert mart_state(airflow, "demo") == before
    assert airflow.scalar("SELECT status FROM clever_landing.sync_runs ORDER BY sync_run_id DESC LIMIT 1") == "failed"
