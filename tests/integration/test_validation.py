"""Great Expectations validation of real landed extractions (real PostgreSQL, simulator, GX)."""

from __future__ import annotations

import copy

import psycopg
import pytest

from clever import pipeline, runs
from clever.catalog import CORE_ENDPOINTS
from clever.validation import ValidationFailed, validate_run
from tests.helpers import load_records, write_records
from tests.integration.test_extract import client_for, run_sync


@pytest.fixture
def conn(warehouse_url):
    from clever.warehouse import ensure_landing_schema

    with psycopg.connect(warehouse_url, autocommit=True) as connection:
        ensure_landing_schema(connection)
        yield connection


def land(conn, simulator, api_version="v3.0"):
    run, status = run_sync(conn, client_for(simulator, api_version, page_size=50), CORE_ENDPOINTS)
    assert status == "completed"
    return run.sync_run_id


def quarantined(conn, run_id):
    return {(e, cid, rule) for e, cid, rule in conn.execute(
        "SELECT endpoint, clever_id, rule FROM clever_landing.quarantine WHERE sync_run_id = %s", (run_id,))}


@pytest.mark.parametrize("api_version", ["v3.0", "v3.1"])
def test_the_sample_district_passes_with_its_missing_optional_fields(
        conn, warehouse_url, simulator, district_dir, tmp_path, api_version):
    users = load_records(district_dir, api_version, "users")
    bare = [u for u in users if set(u) == {"id", "district", "name", "created", "last_modified", "roles"}]
    assert bare, "the sample has users without any optional field"
    run_id = land(conn, simulator, api_version)
    summary = validate_run(warehouse_url, run_id, docs_dir=tmp_path / "docs")
    assert summary["quarantined"] == {} and summary["failed_rules"] == {}
    assert summary["warnings"] == {}
    assert summary["records"]["users"] == summary["records_checked"]["users"] == len(users), "no baseline: all"
    index = tmp_path / "docs" / "index.html"
    assert summary["data_docs"] == str(index) and "clever_v3_" in index.read_text(encoding="utf-8")
    results = conn.execute("SELECT count(*), count(*) FILTER (WHERE success) FROM clever_landing.validation_results "
                           "WHERE sync_run_id = %s", (run_id,)).fetchone()
    assert results[0] > 100 and results[0] == results[1]
    assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'clever_validation'").fetchone() == (0,)


def test_records_breaking_guaranteed_rules_are_quarantined_and_the_rest_pass(
        conn, warehouse_url, simulator, district_dir, tmp_path):
    users = load_records(district_dir, "v3.0", "users")
    sections = load_records(district_dir, "v3.0", "sections")
    students = [u for u in users if "student" in u["roles"]]
    teacher = next(u for u in users if "teacher" in u["roles"] and "student" not in u["roles"])
    no_school, no_name, bad_grade, bad_dob = students[:4]
    del no_school["roles"]["student"]["school"]
    del no_name["name"]
    bad_grade["roles"]["student"]["grade"] = "Sophomore"   # not one of Clever's values: a warning only
    bad_dob["roles"]["student"]["dob"] = "2011-04-01"      # wrong format: a warning only
    duplicate = copy.deepcopy(students[5])
    write_records(district_dir, "v3.0", "users", [*users, duplicate])
    orphan, dangling_member = sections[0], sections[1]
    orphan["school"] = "0" * 24                            # not a school of this extraction
    dangling_member["students"] = [*dangling_member["students"], "f" * 24]  # a warning only
    write_records(district_dir, "v3.0", "sections", sections)

    run_id = land(conn, simulator)
    # Clever never sends a record without an id (the simulator cannot even serve one); land one anyway.
    without_id = {k: v for k, v in teacher.items() if k != "id"}
    conn.execute("""INSERT INTO clever_landing.users (sync_run_id, district_id, clever_id, api_version, raw,
                    extracted_at) VALUES (%s, %s, NULL, 'v3.0', %s, now())""",
                 (run_id, teacher["district"], psycopg.types.json.Jsonb(without_id)))
    summary = validate_run(warehouse_url, run_id, docs_dir=tmp_path / "docs")

    assert quarantined(conn, run_id) == {
        ("users", no_school["id"], "guaranteed field roles.student.school is present, not null and a JSON string"),
        ("users", no_name["id"], "guaranteed field name is present, not null and a JSON object"),
        ("users", duplicate["id"], "no Clever id appears twice in one extraction"),
        ("users", None, "every record has a Clever id"),
        ("users", None, "guaranteed field id is present, not null and a JSON string"),
        ("sections", orphan["id"], "school refers to schools in the same extraction"),
    }
    assert conn.execute("SELECT count(*) FROM clever_landing.quarantine WHERE sync_run_id = %s AND clever_id = %s",
                        (run_id, duplicate["id"])).fetchone() == (2,), "both copies of a duplicate are kept aside"
    raw = conn.execute("SELECT raw FROM clever_landing.quarantine WHERE clever_id = %s", (no_name["id"],)).fetchone()
    assert raw == (no_name,), "the quarantined record is kept exactly as Clever sent it"
    assert summary["quarantined"] == {"users": 4, "sections": 1}
    assert summary["warnings"] == {
        "users": {"roles.student.grade is one of Clever's documented values": 1,
                  "roles.student.dob matches (?:[0-9]{1,2})/([0-9]{1,2})/([0-9]{4})": 1},
        "sections": {"students refers to users in the same extraction": 1},
    }
    examples = conn.execute("SELECT examples FROM clever_landing.validation_results WHERE sync_run_id = %s "
                            "AND column_name = 'roles__student__grade__text'", (run_id,)).fetchone()
    assert examples == (["Sophomore"],)


def test_too_many_quarantined_records_stop_the_run(conn, warehouse_url, simulator, district_dir, tmp_path):
    sections = load_records(district_dir, "v3.0", "sections")
    for section in sections[:20]:
        del section["school"]
    write_records(district_dir, "v3.0", "sections", sections)
    run_id = land(conn, simulator)
    with pytest.raises(ValidationFailed) as failure:
        validate_run(warehouse_url, run_id, quarantine_threshold=0.05, quarantine_floor=10,
                     docs_dir=tmp_path / "docs")
    message = str(failure.value)
    assert "'demo'" in message and f"sync run {run_id}" in message
    assert f"sections: 20 of {len(sections)} records quarantined (limit 10)" in message
    assert "guaranteed field school is present" in message and str(tmp_path / "docs") in message
    runs.fail_run(warehouse_url, run_id, "validate", failure.value)  # as the DAG task does
    with pytest.raises(runs.RunNotComplete):
        pipeline.approve(warehouse_url, run_id, threshold=0.2, floor=10)
    # Operations: after raising the district's limit, clearing close_extraction re-opens the run.
    assert runs.close_extraction(warehouse_url, run_id) == "completed"
    validate_run(warehouse_url, run_id, quarantine_threshold=0.5, quarantine_floor=10, docs_dir=tmp_path / "d2")
    assert len(quarantined(conn, run_id)) == 20, "a re-validation replaces, never duplicates, its quarantine"
    assert "sections" in pipeline.approve(warehouse_url, run_id, threshold=0.2, floor=10)


def test_references_resolve_in_the_latest_approved_extraction_when_not_synced_in_this_run(
        conn, warehouse_url, simulator, district_dir, tmp_path):
    first = land(conn, simulator)
    validate_run(warehouse_url, first, docs_dir=tmp_path / "d1")
    approve(conn, first)
    sections = load_records(district_dir, "v3.0", "sections")
    moved = sections[0]
    moved["school"] = load_records(district_dir, "v3.0", "schools")[-1]["id"]
    write_records(district_dir, "v3.0", "sections", sections)
    run, status = run_sync(conn, client_for(simulator, page_size=50), ("sections",))
    assert status == "completed"
    summary = validate_run(warehouse_url, run.sync_run_id, docs_dir=tmp_path / "d2")
    assert summary["records"] == {"sections": len(sections)} and summary["quarantined"] == {}
    assert summary["records_checked"] == {"sections": 1}, "only the changed section is checked again"
    assert summary["baseline_runs"] == {"sections": first}


def approve(conn, run_id):
    """Record a validated run as the district's approved extraction (the guard is not the point here)."""
    conn.execute("""INSERT INTO clever_landing.approved_extractions (district_slug, endpoint, sync_run_id, synced_at)
                    SELECT 'demo', endpoint, sync_run_id, started_at FROM clever_landing.endpoint_runs
                    WHERE sync_run_id = %s""", (run_id,))


def test_only_records_that_may_have_changed_are_checked_again(conn, warehouse_url, simulator, district_dir, tmp_path):
    users = load_records(district_dir, "v3.0", "users")
    students = [u for u in users if "student" in u["roles"]]
    nameless, edited, twin = students[:3]
    del nameless["name"]
    write_records(district_dir, "v3.0", "users", users)
    first = land(conn, simulator)
    summary = validate_run(warehouse_url, first, docs_dir=tmp_path / "d1")
    assert summary["records_checked"]["users"] == len(users) and summary["quarantined"] == {"users": 1}
    approve(conn, first)

    # Unchanged: only the record quarantined last time is judged again (and quarantined again).
    second = land(conn, simulator)
    summary = validate_run(warehouse_url, second, docs_dir=tmp_path / "d2")
    assert summary["records_checked"] == {"districts": 0, "schools": 0, "users": 1, "sections": 0, "terms": 0,
                                          "courses": 0}
    assert quarantined(conn, second) == {
        ("users", nameless["id"], "guaranteed field name is present, not null and a JSON object")}
    approve(conn, second)

    # An edit, an exact copy of an unchanged record, and a school that disappears: the
    # edited record, both copies, and every user and section of that school are checked.
    schools = load_records(district_dir, "v3.0", "schools")
    gone_school = twin["roles"]["student"]["school"]
    edited["roles"]["student"]["grade"] = "Sophomore"
    write_records(district_dir, "v3.0", "users", [*users, copy.deepcopy(twin)])
    write_records(district_dir, "v3.0", "schools", [s for s in schools if s["id"] != gone_school])
    third = land(conn, simulator)
    summary = validate_run(warehouse_url, third, docs_dir=tmp_path / "d3", quarantine_threshold=0.5)
    at_gone_school = {u["id"] for u in users if gone_school in (
        u["roles"].get("student", {}).get("school"), u["roles"].get("teacher", {}).get("school"))}
    at_gone_school |= {u["id"] for u in users if gone_school in (
        u["roles"].get("student", {}).get("schools", []) + u["roles"].get("teacher", {}).get("schools", []))}
    expected = at_gone_school | {nameless["id"], edited["id"]}
    assert summary["records_checked"]["users"] == len(expected) + 1  # the twin's second copy
    assert summary["records_checked"]["sections"] == sum(
        1 for s in load_records(district_dir, "v3.0", "sections") if s["school"] == gone_school)
    assert summary["records_checked"]["schools"] == 0
    rules = {(cid, rule) for e, cid, rule in quarantined(conn, third) if e == "users"}
    assert (twin["id"], "no Clever id appears twice in one extraction") in rules
    assert (nameless["id"], "guaranteed field name is present, not null and a JSON object") in rules
    assert {cid for cid, rule in rules if rule.startswith("roles.")} == {
        u["id"] for u in users if gone_school in (u["roles"].get("student", {}).get("school"),
                                                  u["roles"].get("teacher", {}).get("school"))}
    assert summary["warnings"]["users"]["roles.student.grade is one of Clever's documented values"] == 1

    # A full validation checks every record; so does one under a suite that changed.
    assert validate_run(warehouse_url, third, docs_dir=tmp_path / "d4", quarantine_threshold=0.5,
                        full=True)["records_checked"]["users"] == len(users) + 1
    conn.execute("UPDATE clever_landing.validated_extractions SET suite_fingerprint = 'an older suite'")
    assert validate_run(warehouse_url, third, docs_dir=tmp_path / "d5", quarantine_threshold=0.5
                        )["records_checked"]["users"] == len(users) + 1
