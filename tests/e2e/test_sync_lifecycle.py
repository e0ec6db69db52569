"""Secure Sync lifecycle through real Airflow runs: day 1 sync; day 2 Clever stops
sharing a student, a teacher, a section, a term and a course and moves a student;
day 3 they come back. Then an unchanged re-sync writes no history.

The application's own data (the demo's schema app: legacy accounts, progress, admin
edits) rides along: every progress row stays tied to its student through archive and
restore, the student who moved keeps history at both schools, and no sync changes a
row an admin wrote."""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from clever.app_schema import APP_TABLES
from clever_devkit.demo_app_data import seed_demo_app_data
from clever_devkit.runner import warehouse_url as resolve_warehouse_url
from clever_devkit.sample_district import Plan, edge_cases
from tests.conftest import DEMO_TOKEN
from tests.e2e.conftest import make_airflow
from tests.helpers import documented_types, load_records, staging_columns, write_records

pytestmark = pytest.mark.e2e

DIMS = ("districts", "schools", "users", "sections", "terms", "courses")


def enrollments_with_primary(sections: list[dict]) -> dict[tuple[str, str, str], bool]:
    """(section, user, role) -> is_primary_teacher, as Clever's sections define them."""
    pairs = {}
    for section in sections:
        for teacher in set(section.get("teachers") or []) | ({section["teacher"]} if section.get("teacher") else set()):
            pairs[(section["id"], teacher, "teacher")] = teacher == section.get("teacher")
        for student in section.get("students") or []:
            pairs[(section["id"], student, "student")] = False
    return pairs


def expected_enrollments(sections: list[dict]) -> set[tuple[str, str, str]]:
    return set(enrollments_with_primary(sections))


def archived_ids(airflow, dim: str) -> set[str]:
    return {r[0] for r in airflow.query(f"SELECT clever_id FROM clever_marts.dim_{dim} WHERE is_archived")}


def enrollment_state(airflow) -> dict[tuple[str, str, str], bool]:
    return {(s, u, r): archived for s, u, r, archived in airflow.query(
        "SELECT section_id, user_id, role, is_archived FROM clever_marts.fct_enrollments")}


def current_versions(airflow) -> dict[str, dict]:
    """When each record's current version started, per data type (enrollments by key)."""
    versions = {dim: dict(airflow.query(f"SELECT clever_id, version_valid_from FROM clever_marts.dim_{dim}"))
                for dim in DIMS}
    versions["section_enrollments"] = {(s, u, r): valid_from for s, u, r, valid_from in airflow.query(
        "SELECT section_id, user_id, role, version_valid_from FROM clever_marts.fct_enrollments")}
    return versions


def expected_new_versions(before: dict[str, list[dict]], after: dict[str, list[dict]]) -> dict[str, set]:
    """The keys a sync from ``before`` to ``after`` must write a version for: archived,
    added or changed records and enrollments. Every other key must keep its version."""
    keys = {}
    for dim in DIMS:
        old, new = ({r["id"]: r for r in records[dim]} for records in (before, after))
        keys[dim] = {cid for cid in old.keys() | new.keys() if old.get(cid) != new.get(cid)}
    old, new = (enrollments_with_primary(records["sections"]) for records in (before, after))
    keys["section_enrollments"] = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    return keys


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


@pytest.fixture
def pruning_airflow(airflow_home, warehouse_url, simulator, tmp_path):
    """The demo district with landing retention of 0 days: every sync deletes the landing
    rows earlier runs left that nothing reads any more."""
    return make_airflow(airflow_home, warehouse_url, tmp_path, simulator, {"demo": DEMO_TOKEN},
                        district_options={"landing_retention_days": 0})


def test_archive_on_unshare_and_restore_on_reappearance(pruning_airflow, district_dir, day1):
    airflow = pruning_airflow  # history lives in the snapshots: none of it needs older landing rows
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
    linked = dict(airflow.query("SELECT clever_id, app_user_id FROM clever_marts.dim_user_matches"))
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
    versions_day1, rows_day1 = current_versions(airflow), history_rows(airflow)
    airflow.sync()
    assert app_tables(airflow) == admin_state  # a sync never writes the application's tables
    assert_every_progress_row_kept(airflow)
    archived_progress = progress_of(airflow, plan["student"])
    assert [(row[0],) for row in archived_progress] == student_events
    assert {row[3] for row in archived_progress} == {True}  # archived, progress kept
    assert airflow.query("SELECT app_user_id FROM clever_marts.dim_user_matches WHERE clever_id = %s",
                         (plan["student"],)) == [(linked[plan["student"]],)]
    assert airflow.query("SELECT user_is_archived FROM clever_marts.dim_user_roles WHERE clever_id = %s "
                         "AND role = 'peer_tutor'", (plan["student"],)) == [(True,)]
    assert airflow.query("SELECT member_clever_id, member_on_section_roster FROM clever_marts.fct_group_members "
                         "WHERE group_id = %s", (group,)) == [(plan["mover"], False)]  # left the section, kept
    mover_progress_day2 = add_progress(airflow, plan["mover"])
    admin_state = app_tables(airflow)

    # Nothing else touched: exactly the planned records, the mover and the rosters that
    # changed get a new version (one history row each); every other key keeps its day-1 one.
    touched = expected_new_versions(day1, day2)
    assert touched["users"] == {plan["student"], plan["teacher"], plan["mover"]}
    assert {plan["section"], plan["old_section"], plan["new_section"]} <= touched["sections"]
    assert touched["terms"] == {plan["term"]} and touched["courses"] == {plan["course"]}
    assert touched["schools"] == touched["districts"] == set()
    versions_day2, rows_day2 = current_versions(airflow), history_rows(airflow)
    for data_type, versions in versions_day2.items():
        kept = {key for key, valid_from in versions.items() if versions_day1[data_type].get(key) == valid_from}
        assert set(versions) - kept == touched[data_type], data_type
        assert rows_day2[data_type] - rows_day1[data_type] == len(touched[data_type]), data_type

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

    # Each sync pruned what the one before left: landing holds the last run only.
    last = airflow.scalar("SELECT max(sync_run_id) FROM clever_landing.sync_runs")
    for dim in DIMS:
        assert airflow.query(f"SELECT DISTINCT sync_run_id FROM clever_landing.{dim}") == [(last,)], dim
    assert airflow.query("SELECT DISTINCT sync_run_id FROM clever_landing.endpoint_runs WHERE pruned_at IS NOT NULL "
                         "ORDER BY 1") == [(run,) for run in range(last - 3, last)]


V31 = "demo_v31"  # the sample district again, read through API v3.1
# Columns computed from a field rather than holding it.
DERIVED = {"roles", "is_student", "is_teacher", "is_staff", "is_district_admin", "is_contact", "contact_student_ids"}
# Required fields kept exactly as returned (see docs/SCHEMA.md, Missing values).
KEPT_AS_RETURNED = {("districts", "name"), ("schools", "name"), ("sections", "name"), ("sections", "school_id")}
MISSING = object()


def field(record: dict, path: str):
    value = record
    for step in path.split("."):
        if not isinstance(value, dict) or step not in value:
            return MISSING
        value = value[step]
    return value


def typed(endpoint: str, column: str, kind: str, raw):
    """What a column must hold for Clever's value ``raw``."""
    if kind == "numeric":
        return Decimal(raw.strip())
    if kind == "timestamptz":
        return datetime.fromisoformat(raw)
    if kind == "date":
        return (datetime.strptime(raw, "%m/%d/%Y").date() if column == "student_dob"
                else date.fromisoformat(raw[:10]))
    return raw


def check_columns_hold_their_fields(airflow, slug: str, endpoint: str, records: list[dict]) -> Counter:
    """Every mart column holding one Clever field has that field's value, typed, and NULL
    (arrays of IDs: empty) when Clever left it out, sent null or sent "". Returns how many
    values of each kind were checked, so the check cannot pass on nothing."""
    kinds = documented_types("staging", f"stg_clever__{endpoint}")
    columns = {name: next(iter(paths)) for name, paths in staging_columns(endpoint).items()
               if len(paths) == 1 and name not in DERIVED}
    rows = {row[0]: dict(zip(columns, row[1:], strict=True)) for row in airflow.query(
        f"SELECT clever_id, {', '.join(columns)} FROM clever_marts.dim_{endpoint} WHERE district_slug = %s", (slug,))}
    assert set(rows) == {r["id"] for r in records}
    seen = Counter()
    for record in records:
        for column, path in columns.items():
            raw, value, kind = field(record, path), rows[record["id"]][column], kinds[column]
            if raw is MISSING or raw is None or (raw == "" and (endpoint, column) not in KEPT_AS_RETURNED):
                seen["missing" if raw is MISSING else "null" if raw is None else "empty"] += 1
                assert value == ([] if kind == "text[]" else None), (slug, record["id"], column, raw)
            else:
                seen["value"] += 1
                assert value == typed(endpoint, column, kind, raw), (slug, record["id"], column, raw)
    return seen


# Every schema dbt builds tables and views in (snapshots are dbt-managed history).
BUILT_SCHEMAS = ("clever_staging", "clever_intermediate", "clever_marts", "clever_reports")


def all_documented_types(airflow) -> dict[tuple[str, str], dict[str, str]]:
    """Column types documented in the dbt docs, for every model the build materialised
    (from the manifest the build wrote)."""
    manifest = json.loads((Path(airflow.env["CLEVER_ARTIFACTS_DIR"]) / "dbt_target" / "manifest.json").read_text())
    return {(node["schema"], node["alias"]): {name: column.get("data_type") for name, column in node["columns"].items()}
            for node in manifest["nodes"].values()
            if node["resource_type"] == "model" and node["config"]["materialized"] != "ephemeral"}


def built_types(airflow) -> dict[tuple[str, str], dict[str, str]]:
    types: dict[tuple[str, str], dict[str, str]] = {}
    for schema, relation, column, kind in airflow.query(
            """SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'v')
                 AND a.attnum > 0 AND NOT a.attisdropped""", (list(BUILT_SCHEMAS),)):
        types.setdefault((schema, relation), {})[column] = kind.replace("timestamp with time zone", "timestamptz")
    return types


def example_ids(key: str) -> list[str]:
    return [cid for cid, _ in next(c for c in edge_cases(Plan()) if c.key == key).examples]


def test_v30_and_v31_syncs_hold_every_field_and_record_their_summaries(
        airflow_home, warehouse_url, simulator, district_dir, tmp_path, stored_warehouse_connection):
    # The warehouse connection lives only in the metadata DB: the runs must use it, not the
    # embedded-warehouse fallback (pointed at nothing here).
    airflow = make_airflow(airflow_home, warehouse_url, tmp_path, simulator, {"demo": DEMO_TOKEN, V31: DEMO_TOKEN},
                           per_district={V31: {"api_version": "v3.1"}}, warehouse_in_environment=False)
    assert "AIRFLOW_CONN_CLEVER_WAREHOUSE" not in airflow.env
    outputs = {slug: airflow.sync(slug) for slug in ("demo", V31)}
    assert conninfo_to_dict(resolve_warehouse_url(airflow.env)) == conninfo_to_dict(warehouse_url)

    summaries = dict((slug, (status, summary)) for slug, status, summary in airflow.query(
        "SELECT district_slug, status, summary FROM clever_landing.run_summaries ORDER BY sync_run_id"))
    assert set(summaries) == {"demo", V31}
    for slug, (status, summary) in summaries.items():
        assert status == "succeeded" and summary["api_version"] == ("v3.1" if slug == V31 else "v3.0")
        assert summary["history"]["users"]["added"] == summary["endpoints"]["users"]["rows"]
        assert "Clever sync run" in outputs[slug] and "users" in outputs[slug]

    # The warehouse has exactly the documented columns and types.
    assert built_types(airflow) == all_documented_types(airflow)

    for slug, version in (("demo", "v3.0"), (V31, "v3.1")):
        seen = Counter()
        for endpoint in DIMS:
            records = load_records(district_dir, version, endpoint)
            seen += check_columns_hold_their_fields(airflow, slug, endpoint, records)
        assert min(seen[k] for k in ("missing", "null", "empty", "value")) > 0, (slug, seen)

        # A co-taught section: every teacher on the roster, one of them primary.
        (team,) = example_ids("team_taught_section")
        section = next(s for s in load_records(district_dir, version, "sections") if s["id"] == team)
        teachers = dict(airflow.query(
            "SELECT user_id, is_primary_teacher FROM clever_marts.fct_enrollments "
            "WHERE district_slug = %s AND section_id = %s AND role = 'teacher'", (slug, team)))
        roster = {*section["teachers"], section["teacher"]}
        assert len(teachers) >= 4 and teachers == {t: t == section["teacher"] for t in roster}

    # v3.1: the teacher who is also a district admin is one user with both roles' fields;
    # in v3.0 the same person is two users.
    (dana,) = example_ids("teacher_admin_v31")
    raw = next(u for u in load_records(district_dir, "v3.1", "users") if u["id"] == dana)
    rows = airflow.query("SELECT roles, is_teacher, is_district_admin, teacher_school_id, teacher_sis_id, "
                         "district_admin_title FROM clever_marts.dim_users WHERE district_slug = %s AND clever_id = %s",
                         (V31, dana))
    assert rows == [(["district_admin", "teacher"], True, True, raw["roles"]["teacher"]["school"],
                     raw["roles"]["teacher"]["sis_id"], raw["roles"]["district_admin"]["title"])]
    v30_roles = dict(airflow.query("SELECT clever_id, roles FROM clever_marts.dim_users WHERE district_slug = 'demo' "
                                   "AND clever_id = ANY(%s)", (example_ids("teacher_admin_v30"),)))
    assert sorted(v30_roles.values()) == [["district_admin"], ["teacher"]]
