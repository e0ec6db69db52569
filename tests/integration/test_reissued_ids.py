"""Records Clever reissues under a new ID, on real PostgreSQL with real dbt builds.

The sample district syncs, then on day 2 Clever serves, in one sync: a term, a course
and a course without a number each gone and back under a new ID with the same
identifying data; a term gone with two new twins (ambiguous); a student gone and back
under a new ID with the same SIS ID but another email; and a course and a student that
are simply gone. The district is first built with its default settings (nothing linked),
then with `reissued_ids: {link_automatically: [terms, courses]}`, then after a reviewer
confirmed the student, rejected a course and settled the ambiguous term in
app.reissued_id_reviews. Day 3 reissues the reissued term again: a line of three records.
Each stage's report, lineage and progress are kept, and the tests read them.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from clever.config import get_district
from clever.connections import WarehouseTarget
from clever.pipeline import build
from clever.warehouse import ensure_landing_schema
from clever_devkit.simulator import CleverSimulator
from tests.conftest import DEMO_TOKEN, copy_sample_district, database
from tests.helpers import land_and_build, load_records, write_records

VERSION = "v3.0"
TERM, SPRING = "5fc9aa36572fdfa815840e02", "4e28f97e9aafc0f239aec556"  # 2026-27 Fall and Spring Semester
COURSE, NO_NUMBER, DROPPED = "c9ea4c2dd29edef8d4b1fc50", "afab7695aa03c062734d51dd", "2598626c86e65d955f003488"
# new Clever IDs (24 hex characters, as Clever's)
NEW_TERM, TWIN_1, TWIN_2, THIRD_TERM = "a1" * 12, "a2" * 12, "a3" * 12, "a4" * 12
NEW_COURSE, NEW_NO_NUMBER, NEW_STUDENT = "b1" * 12, "b2" * 12, "c1" * 12


def _query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _reissue(district_dir: Path, endpoint: str, old_id: str, *new_ids: str, **changes: Any) -> dict:
    """Serve the record ``old_id`` under ``new_ids`` instead (copies with ``changes``), or
    not at all without them; returns the old record."""
    records = load_records(district_dir, VERSION, endpoint)
    old = next(r for r in records if r["id"] == old_id)
    twins = [{**copy.deepcopy(old), "id": new_id, **changes} for new_id in new_ids]
    write_records(district_dir, VERSION, endpoint, [r for r in records if r["id"] != old_id] + twins)
    return old


def _repoint_sections(district_dir: Path, field: str, old_id: str, new_id: str | None) -> None:
    """Sections naming ``old_id`` (as term, course or student) name ``new_id`` instead (a
    student: or no longer have them)."""
    sections = load_records(district_dir, VERSION, "sections")
    for section in sections:
        if field == "students":
            section["students"] = [s for s in (new_id if s == old_id else s for s in section["students"]) if s]
        elif section.get(field) == old_id:
            section[field] = new_id
    write_records(district_dir, VERSION, "sections", sections)


class World:
    def __init__(self, url: str, district_dir: Path):
        self.url, self.dir = url, district_dir
        users = load_records(district_dir, VERSION, "users")
        rostered = {s for section in load_records(district_dir, VERSION, "sections") for s in section["students"]}
        students = [u for u in users if "student" in u["roles"] and u["id"] in rostered
                    and u.get("email") and u["roles"]["student"].get("state_id")]
        self.student, self.leaver = students[0], students[1]
        self.stages: dict[str, dict[str, Any]] = {}

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return _query(self.url, sql, params)

    def record_stage(self, stage: str) -> None:
        self.stages[stage] = {
            "report": {(t, old, new): (status, linked, matched_on, for_old, for_new)
                       for t, old, new, status, linked, matched_on, for_old, for_new in self.query(
                           "SELECT data_type, old_clever_id, new_clever_id, status, is_linked, matched_on, "
                           "candidates_for_old, candidates_for_new FROM clever_marts.rpt_reissued_ids "
                           "WHERE district_slug = 'demo'")},
            "lineage": dict(self.query(
                "SELECT clever_id, lineage_id FROM clever_marts.dim_terms WHERE district_slug = 'demo' "
                "UNION ALL SELECT clever_id, lineage_id FROM clever_marts.dim_courses WHERE district_slug = 'demo' "
                "UNION ALL SELECT clever_id, lineage_id FROM clever_marts.dim_users WHERE district_slug = 'demo'")),
            "details": {(t, old, new): rest for t, old, new, *rest in self.query(
                "SELECT data_type, old_clever_id, new_clever_id, old_label, new_label, sync_run_id, reason "
                "FROM clever_marts.rpt_reissued_ids WHERE district_slug = 'demo'")},
            "sections": set(self.query(
                "SELECT term_id, term_lineage_id, course_id, course_lineage_id FROM clever_marts.dim_sections "
                "WHERE district_slug = 'demo' AND NOT is_archived")),
            "progress": {activity: (student, lineage) for activity, student, lineage in self.query(
                "SELECT activity, student_clever_id, student_lineage_id FROM clever_marts.fct_student_progress")},
        }


def _seed_app(world: World) -> None:
    """An app district linked by Clever ID, a legacy account with the student's SIS ID, and
    progress: by the account, and by the student's Clever ID before and after the reissue."""
    district_id = load_records(world.dir, VERSION, "districts")[0]["id"]
    sis_id = world.student["roles"]["student"]["sis_id"]
    with psycopg.connect(world.url, autocommit=True) as conn:
        ensure_landing_schema(conn)
        conn.execute("INSERT INTO app.districts (app_district_id, name, clever_id) VALUES (1, 'Certification ISD', %s)",
                     (district_id,))
        conn.execute("INSERT INTO app.users (app_user_id, app_district_id, role, sis_id) VALUES (7, 1, 'student', %s)",
                     (sis_id,))
        conn.cursor().executemany(
            "INSERT INTO app.progress_events (app_user_id, student_clever_id, activity, score, occurred_at) "
            "VALUES (%s, %s, %s, 80, %s)",
            [(7, None, "legacy quiz", "2025-10-01T10:00:00Z"),
             (None, world.student["id"], "quiz before", "2026-01-15T10:00:00Z"),
             (None, NEW_STUDENT, "quiz after", "2026-09-15T10:00:00Z")])


def _day2(world: World) -> None:
    d = world.dir
    _reissue(d, "terms", TERM, NEW_TERM)
    _reissue(d, "terms", SPRING, TWIN_1, TWIN_2)
    _repoint_sections(d, "term_id", TERM, NEW_TERM)
    _repoint_sections(d, "term_id", SPRING, TWIN_1)
    _reissue(d, "courses", COURSE, NEW_COURSE)
    assert "number" not in _reissue(d, "courses", NO_NUMBER, NEW_NO_NUMBER)
    _reissue(d, "courses", DROPPED)
    _repoint_sections(d, "course", COURSE, NEW_COURSE)
    _repoint_sections(d, "course", NO_NUMBER, NEW_NO_NUMBER)
    # same SIS ID, another email, no state ID: the SIS ID alone pairs them
    student = dict(world.student["roles"]["student"])
    del student["state_id"]
    _reissue(d, "users", world.student["id"], NEW_STUDENT, email="new.address@students.certification-isd.example",
             roles={"student": student})
    _repoint_sections(d, "students", world.student["id"], NEW_STUDENT)
    _reissue(d, "users", world.leaver["id"])
    _repoint_sections(d, "students", world.leaver["id"], None)


@pytest.fixture(scope="module")
def world(pg_server, tmp_path_factory) -> Iterator[World]:
    district_dir = copy_sample_district(tmp_path_factory.mktemp("reissued") / "district")
    default = get_district("demo")
    linking = dataclasses.replace(default, link_reissued_ids_automatically=("terms", "courses"))
    with database(pg_server, prefix="reissued") as url, \
            CleverSimulator({"demo": (DEMO_TOKEN, district_dir)}, seed=5) as sim:
        world = World(url, district_dir)
        _seed_app(world)
        land_and_build(url, default, sim.base_url, DEMO_TOKEN)
        world.record_stage("day 1")
        _day2(world)
        world.day2_run = land_and_build(url, default, sim.base_url, DEMO_TOKEN)
        world.record_stage("day 2")
        world.ambiguous_user_review = world.query(
            "SELECT status FROM clever_marts.rpt_match_ambiguous WHERE entity = 'user' AND clever_id = %s",
            (NEW_STUDENT,))
        build(WarehouseTarget.from_conninfo(url), linking)
        world.record_stage("linking terms and courses")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.cursor().executemany(
                "INSERT INTO app.reissued_id_reviews (data_type, district_slug, old_clever_id, new_clever_id, "
                "decision, reason, created_by) VALUES (%s, 'demo', %s, %s, %s, %s, 'registrar')",
                [("users", world.student["id"], NEW_STUDENT, "confirm", "same student, re-entered in the SIS"),
                 ("courses", NO_NUMBER, NEW_NO_NUMBER, "reject", "a different course"),
                 ("terms", SPRING, TWIN_1, "confirm", "the sections moved to this one"),
                 ("users", world.leaver["id"], "d1" * 12, "confirm", "a typo")])
        build(WarehouseTarget.from_conninfo(url), linking)
        world.record_stage("reviewed")
        _reissue(district_dir, "terms", NEW_TERM, THIRD_TERM)
        _repoint_sections(district_dir, "term_id", NEW_TERM, THIRD_TERM)
        land_and_build(url, linking, sim.base_url, DEMO_TOKEN)
        world.record_stage("day 3")
        yield world


def _lineage_of_sections(stage: dict, field: str, clever_id: str) -> set[str]:
    index = {"term": (0, 1), "course": (2, 3)}[field]
    return {row[index[1]] for row in stage["sections"] if row[index[0]] == clever_id}


def test_a_term_and_courses_reissued_in_one_sync_are_reported_and_not_linked_by_default(world):
    stage = world.stages["day 2"]
    assert world.stages["day 1"]["report"] == {}
    assert stage["report"][("terms", TERM, NEW_TERM)] == ("suggested", False, ["name_and_dates"], 1, 1)
    assert stage["report"][("courses", COURSE, NEW_COURSE)] == ("suggested", False, ["name_and_number"], 1, 1)
    # a course without a number pairs with its twin without a number
    assert stage["report"][("courses", NO_NUMBER, NEW_NO_NUMBER)] == ("suggested", False, ["name_and_number"], 1, 1)
    assert all(stage["lineage"][cid] == cid for cid in (TERM, NEW_TERM, COURSE, NEW_COURSE))
    assert _lineage_of_sections(stage, "term", NEW_TERM) == {NEW_TERM}
    label = "2026-27 Fall Semester (2026-08-12 to 2026-12-18)"
    assert stage["details"][("terms", TERM, NEW_TERM)] == [
        label, label, world.day2_run, "waiting for a reviewer (or the setting reissued_ids.link_automatically)"]
    name = f"{world.student['name']['first']} {world.student['name']['last']}"
    assert stage["details"][("users", world.student["id"], NEW_STUDENT)] == [
        name, name, world.day2_run, "users are linked only when a reviewer confirms the pair"]


def test_a_record_that_is_simply_gone_is_archived_and_not_reported(world):
    for stage in ("day 2", "reviewed"):
        involved = {cid for key in world.stages[stage]["report"] for cid in key[1:]}
        assert DROPPED not in involved, stage
        assert world.leaver["id"] not in involved or stage == "reviewed", stage  # only the review naming it
    archived = world.query(
        "SELECT clever_id, is_archived, lineage_id FROM clever_marts.dim_courses WHERE clever_id = %s "
        "UNION ALL SELECT clever_id, is_archived, lineage_id FROM clever_marts.dim_users WHERE clever_id = %s",
        (DROPPED, world.leaver["id"]))
    assert sorted(archived) == sorted([(DROPPED, True, DROPPED), (world.leaver["id"], True, world.leaver["id"])])


def test_terms_and_courses_are_linked_when_the_district_says_so_and_read_as_one_history(world):
    stage = world.stages["linking terms and courses"]
    assert stage["report"][("terms", TERM, NEW_TERM)][:2] == ("linked_automatically", True)
    assert stage["report"][("courses", COURSE, NEW_COURSE)][:2] == ("linked_automatically", True)
    assert stage["report"][("courses", NO_NUMBER, NEW_NO_NUMBER)][:2] == ("linked_automatically", True)
    assert (stage["lineage"][TERM], stage["lineage"][NEW_TERM]) == (TERM, TERM)
    assert (stage["lineage"][COURSE], stage["lineage"][NEW_COURSE]) == (COURSE, COURSE)
    # the new term's sections belong to the old term's line; each keeps its own term_id
    assert _lineage_of_sections(stage, "term", NEW_TERM) == {TERM}
    assert _lineage_of_sections(stage, "course", NEW_COURSE) == {COURSE}
    assert _lineage_of_sections(stage, "term", TWIN_1) == {TWIN_1}


def test_ambiguous_pairs_are_never_linked_automatically(world):
    stage = world.stages["linking terms and courses"]
    for twin in (TWIN_1, TWIN_2):
        assert stage["report"][("terms", SPRING, twin)] == ("ambiguous", False, ["name_and_dates"], 2, 1)
        assert stage["lineage"][twin] == twin
    assert world.query("SELECT reason FROM clever_marts.rpt_reissued_ids WHERE new_clever_id = %s", (TWIN_2,)) == [
        ("the old record matches 2 new records; never linked automatically, confirm the right pair",)]


def test_a_reissued_student_is_reported_and_linked_only_when_a_reviewer_confirms(world):
    key = ("users", world.student["id"], NEW_STUDENT)
    for stage in ("day 2", "linking terms and courses"):
        assert world.stages[stage]["report"][key] == ("suggested", False, ["sis_id"], 1, 1), stage
        assert world.stages[stage]["lineage"][NEW_STUDENT] == NEW_STUDENT
    assert world.stages["reviewed"]["report"][key] == ("confirmed", True, ["sis_id"], 1, 1)
    assert world.stages["reviewed"]["lineage"][NEW_STUDENT] == world.student["id"]
    # before the confirmation the account stays the old record's; the new one waits for a decision
    assert world.ambiguous_user_review == [("ambiguous",)]


def test_the_confirmed_students_progress_reads_as_one_history(world):
    old = world.student["id"]
    assert world.stages["linking terms and courses"]["progress"] == {
        "legacy quiz": (old, old), "quiz before": (old, old), "quiz after": (NEW_STUDENT, NEW_STUDENT)}
    assert world.stages["reviewed"]["progress"] == {
        "legacy quiz": (old, old), "quiz before": (old, old), "quiz after": (NEW_STUDENT, old)}
    people = world.query("SELECT person_id, clever_ids, active_clever_ids, person_rule, app_user_ids "
                         "FROM clever_marts.dim_people WHERE %s = ANY (clever_ids)", (NEW_STUDENT,))
    assert people == [(old, sorted([old, NEW_STUDENT]), [NEW_STUDENT], "reissued_id", [7])]
    links = dict(world.query("SELECT clever_id, app_user_id FROM clever_marts.dim_user_matches "
                             "WHERE clever_id IN (%s, %s)", (old, NEW_STUDENT)))
    assert links == {old: 7, NEW_STUDENT: 7}  # the account follows the student
    assert world.query("SELECT count(*) FROM clever_marts.rpt_match_ambiguous WHERE clever_id IN (%s, %s)",
                       (old, NEW_STUDENT)) == [(0,)]
    enrolments = world.query("SELECT DISTINCT user_id, user_lineage_id FROM clever_marts.fct_enrollments "
                             "WHERE user_lineage_id = %s", (old,))
    assert set(enrolments) == {(old, old), (NEW_STUDENT, old)}


def test_reviews_win_over_the_setting_and_a_review_of_no_pair_is_reported(world):
    stage = world.stages["reviewed"]
    assert stage["report"][("courses", NO_NUMBER, NEW_NO_NUMBER)][:2] == ("rejected", False)
    assert stage["lineage"][NEW_NO_NUMBER] == NEW_NO_NUMBER
    # the reviewer settles the ambiguous term: that pair is linked, its twin stays apart
    assert stage["report"][("terms", SPRING, TWIN_1)][:2] == ("confirmed", True)
    assert stage["report"][("terms", SPRING, TWIN_2)][:2] == ("ambiguous", False)
    assert (stage["lineage"][TWIN_1], stage["lineage"][TWIN_2]) == (SPRING, TWIN_2)
    assert _lineage_of_sections(stage, "term", TWIN_1) == {SPRING}
    assert stage["report"][("users", world.leaver["id"], "d1" * 12)] == ("review_ignored", False, None, None, None)


def test_a_term_reissued_twice_is_one_line_from_its_first_id(world):
    report = world.stages["day 3"]["report"]
    assert report[("terms", NEW_TERM, THIRD_TERM)][:2] == ("linked_automatically", True)
    assert {k: v for k, v in report.items() if k != ("terms", NEW_TERM, THIRD_TERM)} == \
        world.stages["reviewed"]["report"]  # earlier pairs are kept, once each
    assert world.query("SELECT clever_id, reissued_from, generation FROM clever_intermediate.int_reissue__lineage "
                       "WHERE lineage_id = %s ORDER BY generation", (TERM,)) == [
        (TERM, None, 0), (NEW_TERM, TERM, 1), (THIRD_TERM, NEW_TERM, 2)]
    assert world.query("SELECT clever_id, is_archived FROM clever_marts.dim_terms WHERE lineage_id = %s "
                       "ORDER BY first_seen_at, clever_id", (TERM,)) == [
        (TERM, True), (NEW_TERM, True), (THIRD_TERM, False)]
    assert _lineage_of_sections(world.stages["day 3"], "term", THIRD_TERM) == {TERM}
    # each build reads only what the snapshots wrote since the one before
    scanned = dict(world.query("SELECT data_type, scanned_through FROM clever_intermediate.int_reissue__scanned "
                               "WHERE district_slug = 'demo'"))
    latest = world.query("SELECT (SELECT max(dbt_valid_from) FROM clever_snapshots.snap_clever__terms), "
                         "(SELECT max(dbt_valid_from) FROM clever_snapshots.snap_clever__users)")[0]
    assert (scanned["terms"], scanned["users"]) == latest
