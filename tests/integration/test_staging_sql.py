"""The staging models' SQL run on chosen records in real PostgreSQL, without a dbt build:
each model is rendered as dbt compiles it, reading its records from a temporary table."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers import cast_functions_sql, render_staging_model


@pytest.fixture
def conn(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True, row_factory=dict_row) as connection:
        connection.execute(cast_functions_sql())
        yield connection


def stage(conn, model: str, records: list[dict]) -> dict[str, dict]:
    """Rows of ``model`` for ``records`` (as Clever returns them), by clever_id."""
    conn.execute("DROP TABLE IF EXISTS records_under_test")
    conn.execute("""CREATE TEMP TABLE records_under_test AS
                    SELECT 'demo'::text AS district_slug, r ->> 'district' AS district_id, r ->> 'id' AS clever_id,
                           1::bigint AS sync_run_id, now() AS synced_at, r AS raw, md5(r::text) AS record_hash
                    FROM jsonb_array_elements(%s::jsonb) AS r""", (json.dumps(records),))
    return {row["clever_id"]: row for row in conn.execute(render_staging_model(model)).fetchall()}


TERM_DATES = {
    "date": ("2025-08-13", date(2025, 8, 13)),
    "utc_midnight": ("2026-01-05T00:00:00.000Z", date(2026, 1, 5)),
    "late_evening_with_offset": ("2026-05-29T23:30:00-05:00", date(2026, 5, 29)),  # the date as written
    "not_a_date": ("2026-02-30", None),
    "empty": ("", None),
    "garbage": ("soon", None),
}


def test_the_safe_casts_work_when_the_planner_goes_parallel(conn):
    """A million-user build's plans go parallel; the casts catch errors in a subtransaction,
    which a parallel query forbids ("cannot start subtransactions during a parallel
    operation"): they must keep the query serial instead of failing the build."""
    conn.execute("CREATE TEMP TABLE stamps AS SELECT CASE WHEN i % 3 = 0 THEN 'soon' ELSE '2025-08-13T00:00:00Z' END "
                 "AS value FROM generate_series(1, 20000) AS i")
    # Planned once before forcing parallel mode: forced, each cast inside the functions
    # would be a parallel plan of its own (a debug setting's artefact, slow).
    conn.execute("SELECT clever_staging.try_timestamptz('soon'), clever_staging.try_date('soon', 'YYYY-MM-DD')")
    version = conn.execute("SHOW server_version_num").fetchone()["server_version_num"]
    conn.execute("SET debug_parallel_query = on" if int(version) >= 160000 else "SET force_parallel_mode = on")
    for setting in ("parallel_setup_cost", "parallel_tuple_cost", "min_parallel_table_scan_size"):
        conn.execute(f"SET {setting} = 0")
    row = conn.execute("SELECT count(clever_staging.try_timestamptz(value)) AS stamps, "
                       "count(clever_staging.try_date(left(value, 10), 'YYYY-MM-DD')) AS dates FROM stamps").fetchone()
    assert row == {"stamps": 13334, "dates": 13334}


@pytest.mark.parametrize("time_zone", ["UTC", "Pacific/Kiritimati", "America/Los_Angeles", "Asia/Tokyo"])
def test_term_dates_are_the_dates_clever_wrote_whatever_the_session_time_zone(conn, time_zone):
    conn.execute(f"SET TIME ZONE '{time_zone}'")
    terms = [{"id": case, "district": "d1", "name": case, "start_date": text, "end_date": text}
             for case, (text, _) in TERM_DATES.items()]
    rows = stage(conn, "stg_clever__terms", terms)
    assert {case: (row["start_date"], row["end_date"]) for case, row in rows.items()} == {
        case: (expected, expected) for case, (_, expected) in TERM_DATES.items()}


def test_nested_and_v31_fields_land_in_typed_columns(conn):
    student = {
        "id": "s1", "district": "d1", "name": {"first": "Ada", "last": "L"},
        "lms_status": {"synced_in_lms": True},
        "roles": {"student": {
            "school": "sch1", "schools": ["sch1"], "sis_id": "S1", "legacy_id": "5f0c",
            "created": "2025-07-04T17:20:58.000Z", "last_modified": "2026-08-04T17:49:45.000Z",
            "location": {"address": "1 Main St", "city": "Austin", "state": "TX", "zip": "78701",
                         "lat": " 30.2672", "lon": "-97.7431"},
            "enrollments": [{"school": "sch1", "start_date": "2025-08-13T00:00:00.000Z", "end_date": None}],
            "ext": {"house": "Gryffindor"}, "home_language_code": "spa",
            "preferred_name": {"first": "Addy", "middle": "Q", "last": None},
            "disability": {"disability_code": "sld", "disability_status": "Y", "disability_type": "Dyslexia"}}},
    }
    # Every optional field present but empty, null or malformed: all NULL.
    empty = {
        "id": "s2", "district": "d1", "name": {"first": "Bo", "last": "M"}, "lms_status": {"synced_in_lms": "yes"},
        "roles": {"student": {
            "school": "sch1", "sis_id": "S2", "legacy_id": "", "created": "", "last_modified": "soon",
            "location": {"address": "", "city": None, "state": "", "zip": "", "lat": "north", "lon": ""},
            "enrollments": None, "ext": None, "home_language_code": "", "preferred_name": {"middle": ""},
            "disability": {"disability_code": None, "disability_status": "", "disability_type": ""}}},
    }
    staff_teacher = {
        "id": "t1", "district": "d1", "name": {"first": "Dana", "last": "W"},
        "roles": {
            "teacher": {"school": "sch1", "sis_id": "T1", "legacy_id": "9a", "name": {"first": "Dana", "middle": "",
                        "last": "Whitfield"}, "ext": {}, "created": "2025-07-01T00:00:00Z"},
            "staff": {"staff_id": "ST1", "roles": ["Counselor", "Coach"], "credentials": {"district_username": "dw"},
                      "ext": {"badge": 7}, "legacy_id": "8b"},
            "district_admin": {"title": "Admin", "legacy_id": "7c"},
            "contact": {"legacy_id": "6d", "student_relationships": [
                {"student": "s1", "relationship": "Parent", "type": "Family"}]}},
    }
    rows = stage(conn, "stg_clever__users", [student, empty, staff_teacher])
    ada, bo, dana = rows["s1"], rows["s2"], rows["t1"]
    assert ada["synced_in_lms"] is True and bo["synced_in_lms"] is None and dana["synced_in_lms"] is None
    assert (ada["student_address"], ada["student_city"], ada["student_state"], ada["student_zip"]) == (
        "1 Main St", "Austin", "TX", "78701")
    assert (ada["student_lat"], ada["student_lon"]) == (Decimal("30.2672"), Decimal("-97.7431"))
    assert ada["student_enrollments"] == student["roles"]["student"]["enrollments"]
    assert ada["student_ext"] == {"house": "Gryffindor"}
    assert ada["student_created_at"] == datetime(2025, 7, 4, 17, 20, 58, tzinfo=UTC)
    assert (ada["student_legacy_id"], ada["student_home_language_code"], ada["student_preferred_middle_name"]) == (
        "5f0c", "spa", "Q")
    assert (ada["student_disability_code"], ada["student_disability_status"], ada["student_disability_type"]) == (
        "sld", "Y", "Dyslexia")
    new_student_columns = [c for c in ada if c.startswith("student_") and c not in (
        "student_school_id", "student_school_ids", "student_sis_id")]
    assert {c: bo[c] for c in new_student_columns} == dict.fromkeys(new_student_columns)
    assert (dana["teacher_first_name"], dana["teacher_middle_name"], dana["teacher_last_name"]) == (
        "Dana", None, "Whitfield")
    assert (dana["teacher_legacy_id"], dana["teacher_ext"]) == ("9a", {})
    assert dana["teacher_created_at"] == datetime(2025, 7, 1, tzinfo=UTC) and dana["teacher_last_modified_at"] is None
    assert (dana["staff_roles"], dana["staff_district_username"], dana["staff_ext"], dana["staff_legacy_id"]) == (
        ["Counselor", "Coach"], "dw", {"badge": 7}, "8b")
    assert ada["staff_roles"] == []  # arrays of a missing role are empty, as everywhere
    assert (dana["district_admin_legacy_id"], dana["contact_legacy_id"]) == ("7c", "6d")
    assert dana["contact_student_relationships"] == staff_teacher["roles"]["contact"]["student_relationships"]
    assert dana["contact_student_ids"] == ["s1"]


def test_district_school_and_section_fields_land_in_typed_columns(conn):
    district = {"id": "d1", "name": "D", "error": "SIS file missing", "pause_start": "2026-06-01T00:00:00Z",
                "pause_end": "", "lms_state": "success", "lms_type": "", "last_attendance_sync": None,
                "district_contact": {"id": "c1", "name": {"first": "A", "middle": "B", "last": "C"}}}
    (row,) = stage(conn, "stg_clever__districts", [district]).values()
    assert (row["contact_id"], row["contact_middle_name"], row["sync_error"]) == ("c1", "B", "SIS file missing")
    assert (row["pause_start"], row["pause_end"]) == (datetime(2026, 6, 1, tzinfo=UTC), None)
    assert (row["lms_state"], row["lms_type"], row["clever_last_attendance_sync"]) == ("success", None, None)

    schools = stage(conn, "stg_clever__schools", [
        {"id": "a", "district": "d1", "name": "A", "location": {"lat": "30.2672", "lon": "-97.7431"},
         "ext": {"region": "north"}},
        {"id": "b", "district": "d1", "name": "B", "location": {"lat": "1e5", "lon": ""}, "ext": None}])
    assert (schools["a"]["lat"], schools["a"]["lon"], schools["a"]["ext"]) == (
        Decimal("30.2672"), Decimal("-97.7431"), {"region": "north"})
    assert (schools["b"]["lat"], schools["b"]["lon"], schools["b"]["ext"]) == (None, None, None)

    sections = stage(conn, "stg_clever__sections", [
        {"id": "x", "district": "d1", "school": "a", "name": "X", "lms_status": {"synced_in_lms": False},
         "ext": {"room": "12"}},
        {"id": "y", "district": "d1", "school": "a", "name": "Y", "lms_status": None}])
    assert (sections["x"]["synced_in_lms"], sections["x"]["ext"]) == (False, {"room": "12"})
    assert (sections["y"]["synced_in_lms"], sections["y"]["ext"]) == (None, None)
