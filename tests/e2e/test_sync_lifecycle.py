"""Secure Sync lifecycle through real Airflow runs: day 1 sync; day 2 Clever stops
sharing a student, a teacher, a section, a term and a course and moves a student;
day 3 they come back. Then an unchanged re-sync writes no history.

The application's own data (the demo's schema app: legacy accounts, progress, admin
edits) rides along: every progress row stays tied to its student through archive and
restore, the student who moved keeps history at both schools, and no sync changes a
row an admin wrote."""

from __future__ import annotations

import copy
from collections import Counter

import pytest

from clever.app_schema import APP_TABLES
from clever.demo_app_data import seed_demo_app_data
from tests.helpers import load_records, write_records

pytestmark = pytest.mark.e2e

DIMS = ("districts", "schools", "users", "sections", "terms", "courses")


def expected_enrollments(sections: list[dict]) -> set[tuple[str, str, str]]:
    pairs = set()
    for section in sections:
        for teacher in set(section.get("teachers") or []) | ({section["teacher"]} if section.get("teacher") else set()):
            pairs.add((section["id"], teacher, "teacher"))
        for student in section.get("students") or []:
            pairs.add((section["id"], student, "student"))
    return pairs


def archived_ids(airflow, dim: str) -> set[str]:
    return {r[0] for r in airflow.query(f"SELECT clever_id FROM clever_marts.dim_{dim} WHERE is_archived")}


def enrollment_state(airflow) -> dict[tuple[str, str, str], bool]:
    return {(s, u, r): archived for s, u, r, archived in airflow.query(
        "SELECT section_id, user_id, role, is_archived FROM clever_marts.fct_enrollments")}


def history_rows(airflow) -> Counter:
    counts = Counter()
    for table in ("districts", "schools", "users", "sections", "terms", "courses", "section_enrollments"):
        counts[table] = airflow.scalar(f"SELECT count(*) FROM clever_snapshots.snap_clever__{table}")
    for table in ("district", "school", "user"):
        counts[f"{table} links"] = airflow.scalar(f"SELECT count(*) FROM clever_snapshots.snap_match__{table}_links")
    return counts


def app_tables(airflow) -> dict[str, list[tuple]]:
    """Every row of the application's schema, as admins and the application wrote it."""
    return {table: airflow.query(f"SELECT * FROM app.{table} ORDER BY 1, 2, 3") for table in APP_TABLES}


def progress_of(airflow, student: str) -> list[tuple]:
    return airflow.query(
        "SELECT progress_event_id, link_source, school_id, student_is_archived FROM clever_marts.fct_student_progress "
        "WHERE student_clever_id = %s ORDER BY progress_event_id", (student,))


def assert_every_progress_row_kept(airflow) -> None:
    assert airflow.scalar("SELECT count(*) FROM clever_marts.fct_student_progress") == \
        airflow.scalar("SELECT count(*) FROM app.progress_events") > 0


@pytest.fixture
def day1(district_dir):
    return {e: load_records(district_dir, "v3.0", e) for e in DIMS}


def plan_day2(day1: dict[str, list[dict]]) -> dict:
    """Pick the records Clever stops sharing, and a student who moves school."""
    sections, users = day1["sections"], {u["id"]: u for u in day1["users"]}
    gone_section = next(s for s in sections if s.get("students") and s.get("course") and s.get("term_id")
                        and len(s.get("teachers") or []) == 1)
    in_gone = set(gone_section["students"]) | set(gone_section["teachers"])
    teaching = Counter(t for s in sections for t in s.get("teachers") or [])
    gone_teacher = next(t for t, _ in sorted(teaching.items()) if t not in in_gone)
    enrolled = Counter(st for s in sections for st in s.get("students") or [])
    gone_student = next(st for st, _ in sorted(enrolled.items()) if st not in in_gone)
    schools = sorted(s["id"] for s in day1["schools"])

    def movable(student_id: str) -> bool:
        user = users[student_id]
        return (student_id not in in_gone | {gone_student}
                and len(user["roles"]["student"].get("schools") or []) == 1)

    mover = next(st for st, _ in sorted(enrolled.items()) if movable(st))
    old_school = users[mover]["roles"]["student"]["school"]
    new_school = next(s for s in schools if s != old_school)
    old_section = next(s for s in sections if mover in (s.get("students") or []) and s["id"] != gone_section["id"])
    new_section = next(s for s in sections if s["school"] == new_school and s["id"] != gone_section["id"]
                       and mover not in (s.get("students") or []))
    return {
        "section": gone_section["id"], "course": gone_section["course"], "term": gone_section["term_id"],
        "teacher": gone_teacher, "student": gone_student,
        "mover": mover, "old_school": old_school, "new_school": new_school,
        "old_section": old_section["id"], "new_section": new_section["id"],
    }


def write_day2(district_dir, day1: dict[str, list[dict]], plan: dict) -> dict[str, list[dict]]:
    day2 = copy.deepcopy(day1)
    day2["sections"] = [s for s in day2["sections"] if s["id"] != plan["section"]]
    day2["courses"] = [c for c in day2["courses"] if c["id"] != plan["course"]]
    day2["terms"] = [t for t in day2["terms"] if t["id"] != plan["term"]]
    day2["users"] = [u for u in day2["users"] if u["id"] not in (plan["teacher"], plan["student"])]
    for section in day2["sections"]:
        section["students"] = [s for s in section.get("students") or [] if s != plan["student"]]
        section["teachers"] = [t for t in section.get("teachers") or [] if t != plan["teacher"]]
        if section.get("teacher") == plan["teacher"]:  # Clever names another primary, or none
            if section["teachers"]:
                section["teacher"] = section["teachers"][0]
            else:
                del section["teacher"]
        if section["id"] == plan["old_section"]:
            section["students"].remove(plan["mover"])
        if section["id"] == plan["new_section"]:
            section["students"] = sorted(section["students"] + [plan["mover"]])
    mover = next(u for u in day2["users"] if u["id"] == plan["mover"])
    mover["roles"]["student"]["school"] = plan["new_school"]
    mover["roles"]["student"]["schools"] = [plan["new_school"]]
    for endpoint, records in day2.items():
        write_records(district_dir, "v3.0", endpoint, records)
    return day2


def add_progress(airflow, student: str) -> int:
    """Progress the application records now for a student provisioned from Clever."""
    return airflow.scalar("INSERT INTO app.progress_events (student_clever_id, activity, score, occurred_at) "
                          "VALUES (%s, 'Check-in quiz', 80, clock_timestamp()) RETURNING progress_event_id", (student,))


def test_archive_on_unshare_and_restore_on_reappearance(airflow, district_dir, day1):
    seed_demo_app_data(airflow.warehouse_url, district_dir)
    # Day 1: everything Clever shares lands, nothing archived.
    airflow.sync()
    for dim in DIMS:
        rows = airflow.query(f"SELECT clever_id, is_archived, archived_at FROM clever_marts.dim_{dim}")
        assert sorted(r[0] for r in rows) == sorted(r["id"] for r in day1[dim]), dim
        assert not any(r[1] or r[2] for r in rows), dim
    assert set(enrollment_state(airflow)) == expected_enrollments(day1["sections"])
    first_seen = dict(airflow.query("SELECT clever_id, first_seen_at FROM clever_marts.dim_users"))

    # The application: legacy accounts of the student Clever will unshare and of the one
    # who moves are linked; progress and admin edits are recorded before day 2.
    plan = plan_day2(day1)
    linked = dict(airflow.query("SELECT clever_id, app_user_id FROM clever_marts.user_matches"))
    assert plan["student"] in linked and plan["mover"] in linked
    student_progress = progress_of(airflow, plan["student"])
    assert {source for _, source, *_ in student_progress} == {"user_match"}
    mover_progress_day1 = add_progress(airflow, plan["mover"])
    add_progress(airflow, plan["student"])
    airflow.query("INSERT INTO app.role_grants (user_clever_id, role, granted_by) "
                  "VALUES (%s, 'peer_tutor', 'teacher') RETURNING 1", (plan["student"],))
    group = airflow.scalar("INSERT INTO app.groups (app_district_id, name, kind, section_clever_id, created_by) "
                           "VALUES (1, 'Table B', 'section_subgroup', %s, 'teacher') RETURNING group_id",
                           (plan["old_section"],))
    airflow.query("INSERT INTO app.group_members (group_id, app_user_id, added_by) VALUES (%s, %s, 'teacher') "
                  "RETURNING 1", (group, linked[plan["mover"]]))
    airflow.query("UPDATE app.users SET email = 'renamed@example.org' WHERE app_user_id = %s RETURNING 1",
                  (linked[plan["mover"]],))
    admin_state = app_tables(airflow)
    student_events = airflow.query(
        "SELECT progress_event_id FROM app.progress_events WHERE app_user_id = %s OR student_clever_id = %s "
        "ORDER BY 1", (linked[plan["student"]], plan["student"]))
    assert len(student_events) == len(student_progress) + 1

    # Day 2: Clever stops sharing five records and moves a student.
    day2 = write_day2(district_dir, day1, plan)
    before_day2 = enrollment_state(airflow)
    airflow.sync()
    assert app_tables(airflow) == admin_state  # a sync never writes the application's tables
    assert_every_progress_row_kept(airflow)
    archived_progress = progress_of(airflow, plan["student"])
    assert [(row[0],) for row in archived_progress] == student_events
    assert {row[3] for row in archived_progress} == {True}  # archived, progress kept
    assert airflow.query("SELECT app_user_id FROM clever_marts.user_matches WHERE clever_id = %s",
                         (plan["student"],)) == [(linked[plan["student"]],)]
    assert airflow.query("SELECT user_is_archived FROM clever_marts.dim_user_roles WHERE clever_id = %s "
                         "AND role = 'peer_tutor'", (plan["student"],)) == [(True,)]
    assert airflow.query("SELECT member_clever_id, member_on_section_roster FROM clever_marts.fct_group_members "
                         "WHERE group_id = %s", (group,)) == [(plan["mover"], False)]  # left the section, kept
    mover_progress_day2 = add_progress(airflow, plan["mover"])
    admin_state = app_tables(airflow)

    assert archived_ids(airflow, "users") == {plan["student"], plan["teacher"]}
    assert archived_ids(airflow, "sections") == {plan["section"]}
    assert archived_ids(airflow, "terms") == {plan["term"]}
    assert archived_ids(airflow, "courses") == {plan["course"]}
    assert archived_ids(airflow, "schools") == set() and archived_ids(airflow, "districts") == set()
    for dim in DIMS:  # nothing deleted
        assert airflow.scalar(f"SELECT count(*) FROM clever_marts.dim_{dim}") == len(day1[dim]), dim
    archived_at = airflow.query("SELECT archived_at, last_seen_at FROM clever_marts.dim_users WHERE is_archived")
    assert all(a is not None and seen is not None and seen < a for a, seen in archived_at)

    mover = airflow.query(
        "SELECT is_archived, student_school_id, student_school_ids FROM clever_marts.dim_users WHERE clever_id = %s",
        (plan["mover"],))[0]
    assert mover == (False, plan["new_school"], [plan["new_school"]])

    after_day2 = enrollment_state(airflow)
    expected_active = expected_enrollments(day2["sections"])
    assert {k for k, archived in after_day2.items() if not archived} == expected_active
    newly_archived = {k for k, archived in after_day2.items() if archived}
    assert newly_archived == set(before_day2) - expected_active
    assert (plan["old_section"], plan["mover"], "student") in newly_archived
    assert after_day2[(plan["new_section"], plan["mover"], "student")] is False
    gone_section_enrollments = {k for k in before_day2 if k[0] == plan["section"]}
    assert gone_section_enrollments and gone_section_enrollments <= newly_archived

    # Day 3: everything comes back under the same Clever IDs.
    for endpoint, records in day1.items():
        write_records(district_dir, "v3.0", endpoint, records)
    airflow.sync()
    for dim in DIMS:
        assert archived_ids(airflow, dim) == set(), dim
        assert airflow.scalar(f"SELECT count(*) FROM clever_marts.dim_{dim}") == len(day1[dim]), dim
    after_day3 = enrollment_state(airflow)
    assert {k for k, archived in after_day3.items() if not archived} == expected_enrollments(day1["sections"])
    # the association that existed only while the student had moved is now the archived one
    assert {k for k, archived in after_day3.items() if archived} == {(plan["new_section"], plan["mover"], "student")}
    restored = airflow.query(
        "SELECT clever_id, first_seen_at, archived_at FROM clever_marts.dim_users WHERE clever_id IN (%s, %s)",
        (plan["student"], plan["teacher"]))
    assert {(cid, seen) for cid, seen, _ in restored} == {(cid, first_seen[cid]) for cid, *_ in restored}
    assert all(a is None for *_, a in restored)
    # The application's data came through archive, move and restore untouched.
    assert app_tables(airflow) == admin_state
    assert_every_progress_row_kept(airflow)
    restored_progress = progress_of(airflow, plan["student"])
    assert [row[:3] for row in restored_progress] == [row[:3] for row in archived_progress]
    assert {row[3] for row in restored_progress} == {False}
    schools = dict((event, school) for event, _, school, _ in progress_of(airflow, plan["mover"]))
    assert schools[mover_progress_day1] == plan["old_school"] and schools[mover_progress_day2] == plan["new_school"]
    assert airflow.query("SELECT member_on_section_roster FROM clever_marts.fct_group_members WHERE group_id = %s",
                         (group,)) == [(True,)]
    assert airflow.query("SELECT user_is_archived FROM clever_marts.dim_user_roles WHERE clever_id = %s "
                         "AND role = 'peer_tutor'", (plan["student"],)) == [(False,)]  # restored, grant kept
    # The archived period stays in history: active → archived → active.
    history = [r[0] for r in airflow.query(
        "SELECT dbt_is_deleted FROM clever_snapshots.snap_clever__users WHERE clever_id = %s ORDER BY dbt_valid_from",
        (plan["student"],))]
    assert history == ["False", "True", "False"]
    term_history = [r[0] for r in airflow.query(
        "SELECT dbt_is_deleted FROM clever_snapshots.snap_clever__terms WHERE clever_id = %s ORDER BY dbt_valid_from",
        (plan["term"],))]
    assert term_history == ["False", "True", "False"]

    # An unchanged re-sync adds no history rows at all.
    rows_before = history_rows(airflow)
    airflow.sync()
    assert history_rows(airflow) == rows_before


def test_run_summary_is_recorded(airflow):
    output = airflow.sync()
    summary = airflow.query("SELECT status, summary FROM clever_landing.run_summaries")
    assert len(summary) == 1 and summary[0][0] == "succeeded"
    assert summary[0][1]["history"]["users"]["added"] == summary[0][1]["endpoints"]["users"]["rows"]
    assert "Clever sync run" in output and "users" in output
