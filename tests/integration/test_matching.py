"""Matching the application's records to Clever, on real PostgreSQL with real dbt builds.

Two districts share one warehouse and one simulator: the sample "Certification ISD"
(v3.0, slug demo, default rule order) and a generated "North Valley USD" (v3.1, slug
north) whose config drops its NCES rule and tries email before SIS IDs. Both use the
same SIS, NCES and school numbering, so anything matched across districts would show.
The tests read one built warehouse in order; the last one edits both sides and
rebuilds to show that links are kept over time. The same build also shows the sample's
missing optional fields arriving as NULL (certification: non-guaranteed fields).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from clever import dbt_runner
from clever.config import load_districts
from clever.connections import WarehouseTarget
from clever.pipeline import build
from clever.warehouse import ensure_landing_schema
from clever_devkit.sample_district import generate
from clever_devkit.simulator import CleverSimulator
from tests.conftest import SAMPLE_DISTRICT, _admin_url
from tests.helpers import land_and_build, load_records, write_records

DEMO_TOKEN, NORTH_TOKEN = "matching-demo-token", "matching-north-token"


def _student(users: list[dict], sis_id: str) -> dict:
    return next(u for u in users if u["roles"].get("student", {}).get("sis_id") == sis_id)


class World:
    """The built warehouse, the Clever records the app rows were made from, and syncs."""

    def __init__(self, url: str, sim: CleverSimulator, districts: dict, dirs: dict[str, Path]):
        self.url, self.sim, self.districts, self.dirs = url, sim, districts, dirs
        self.demo_users = load_records(dirs["demo"], "v3.0", "users")
        self.north_users = load_records(dirs["north"], "v3.1", "users")
        self.demo = {key: _student(self.demo_users, sis) for key, sis in
                     {"A": "S100020", "B": "S100021", "C": "S100022", "D": "S100023", "E": "S100024",
                      "F": "S100025"}.items()}
        self.north = {key: _student(self.north_users, sis) for key, sis in
                      {"S5": "S100005", "P": "S100030", "Q": "S100031", "R": "S100032"}.items()}

    def sync(self, slug: str) -> None:
        token = DEMO_TOKEN if slug == "demo" else NORTH_TOKEN
        land_and_build(self.url, self.districts[slug], self.sim.base_url, token)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: tuple = ()) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql, params)

    def links(self, entity: str = "user") -> dict[tuple[str, str], tuple[Any, ...]]:
        key = {"district": "app_district_id", "school": "app_school_id", "user": "app_user_id"}[entity]
        return {(slug, cid): (app_id, rule, source) for slug, cid, app_id, rule, source in self.query(
            f"SELECT district_slug, clever_id, {key}, rule, match_source FROM clever_marts.dim_{entity}_matches")}

    def review(self) -> dict[tuple[str, str], tuple[str, list[int], str]]:
        return {(slug, cid): (status, candidates, reason) for slug, cid, status, candidates, reason in self.query(
            "SELECT district_slug, clever_id, status, candidate_app_ids, reason FROM clever_marts.rpt_match_ambiguous "
            "WHERE entity = 'user'")}


def hannah_school(world: World) -> str:
    """The school where two students are called Hannah Anderson (app school 14 stands for it)."""
    return next(s["id"] for s in load_records(world.dirs["demo"], "v3.0", "schools")
                if s["name"] == "Bluebonnet High School")


def _seed_app(world: World) -> None:
    d, n = world.demo, world.north
    demo_schools = {s["name"]: s for s in load_records(world.dirs["demo"], "v3.0", "schools")}
    north_schools = {s["name"]: s for s in load_records(world.dirs["north"], "v3.1", "schools")}
    dana = next(u for u in world.demo_users if u["roles"].get("teacher", {}).get("sis_id") == "T1000")
    north_dana = next(u for u in world.north_users if u["roles"].get("teacher", {}).get("sis_id") == "T1000")
    rows = {
        "districts": [
            (1, "Certification ISD", "TX", "4812345"),
            (2, "North Valley U.S.D.", "TX", None),
            (3, "North Valley USD", "CA", None),  # same name, other state
        ],
        "schools": [
            (11, 1, "Maple Grove", None, demo_schools["Maple Grove Elementary"]["id"]),
            (12, 1, "Maple Grove (old record)", demo_schools["Maple Grove Elementary"]["nces_id"], None),
            (13, 1, "Riverside", demo_schools["Riverside Elementary"]["nces_id"], None),
            (14, 1, "BLUEBONNET  HIGH-SCHOOL", None, None),
            # north's Maple Grove has the very same NCES ID as demo's
            (21, 2, "Maple Grove Elem", north_schools["Maple Grove Elementary"]["nces_id"], None),
        ],
        "users": [  # app_user_id, district, school, role, first, last, email, sis_id, state_id
            (101, 1, None, "student", "Mateo", "Hernandez", None, "s100020", None),  # A by SIS ID
            (102, 1, None, "student", None, None, d["A"]["email"], None, None),  # A again, weaker rule
            (103, 1, None, "teacher", None, None, None, "S100021", None),  # B's SIS ID, but a teacher
            (104, 1, None, "student", None, None, None, None, "TX900000022"),  # C twice: ambiguous
            (105, 1, None, "student", None, None, None, None, " tx900000022 "),
            (106, 1, 14, "student", "Hannah", "Anderson", None, None, None),  # two Hannahs at Bluebonnet
            (107, 1, None, "student", None, None, d["D"]["email"].upper(), None, None),  # D's email; override: E
            (108, 1, None, "student", None, None, None, "S100025", None),  # F, unlinked by an override
            (109, 1, None, "teacher", "Dana", "Whitfield", dana["email"], None, None),  # both v3.0 records
            (110, 1, None, "student", None, None, n["S5"]["email"], None, None),  # a north student's email
            (201, 2, None, "student", None, None, None, "S100005", None),  # north's S100005, not demo's
            (202, 2, None, "student", None, None, n["Q"]["email"], n["P"]["roles"]["student"]["sis_id"], None),
            (203, 2, None, "student", None, None, None, None, n["R"]["roles"]["student"]["state_id"]),
            (204, 2, None, "teacher", None, None, north_dana["email"], None, None),
        ],
    }
    with psycopg.connect(world.url, autocommit=True) as conn:
        ensure_landing_schema(conn)
        conn.cursor().executemany("INSERT INTO app.districts (app_district_id, name, state, nces_id) "
                                  "VALUES (%s, %s, %s, %s)", rows["districts"])
        conn.cursor().executemany("INSERT INTO app.schools (app_school_id, app_district_id, name, nces_id, clever_id) "
                                  "VALUES (%s, %s, %s, %s, %s)", rows["schools"])
        conn.cursor().executemany(
            "INSERT INTO app.users (app_user_id, app_district_id, app_school_id, role, first_name, last_name, email, "
            "sis_id, state_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows["users"])
        conn.cursor().executemany(
            "INSERT INTO app.match_overrides (entity, district_slug, clever_id, app_id, reason, created_by) "
            "VALUES ('user', 'demo', %s, %s, 'test', 'tester')", [(d["E"]["id"], 107), (d["F"]["id"], None)])
        conn.cursor().executemany(
            "INSERT INTO app.progress_events (app_user_id, student_clever_id, activity, score, occurred_at) "
            "VALUES (%s, %s, 'quiz', 90, '2026-01-15T10:00:00Z')",
            [(101, None), (102, None), (None, n["S5"]["id"]), (107, None)])


@pytest.fixture(scope="module")
def world(pg_server, tmp_path_factory) -> Iterator[World]:
    admin = _admin_url(pg_server)
    name = f"test_matching_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{admin.rpartition('/')[0]}/{name}"
    tmp = tmp_path_factory.mktemp("matching")
    dirs = {"demo": tmp / "demo", "north": tmp / "north"}
    import shutil

    shutil.copytree(SAMPLE_DISTRICT, dirs["demo"], ignore=shutil.ignore_patterns("*.md"))
    generate(dirs["north"], seed=3, district_name="North Valley USD")
    # Co-teachers have no maximum: one north section taught by every teacher there is.
    sections = load_records(dirs["north"], "v3.1", "sections")
    teachers = sorted(u["id"] for u in load_records(dirs["north"], "v3.1", "users") if "teacher" in u["roles"])
    sections[0]["teachers"] = teachers
    sections[0]["teacher"] = teachers[0]
    write_records(dirs["north"], "v3.1", "sections", sections)
    config = tmp / "districts.yml"
    config.write_text(yaml.safe_dump({"districts": [
        {"slug": "demo"},
        {"slug": "north", "api_version": "v3.1",
         "matching": {"districts": ["clever_id", "name_state"], "users": ["clever_id", "email", "sis_id"]}},
    ]}))
    districts = {d.slug: d for d in load_districts(config)}
    saved_artifacts = dbt_runner.ARTIFACTS_DIR
    dbt_runner.ARTIFACTS_DIR = tmp / "artifacts"
    try:
        with CleverSimulator({"demo": (DEMO_TOKEN, dirs["demo"]), "north": (NORTH_TOKEN, dirs["north"])},
                             rate_limit_per_minute=None) as sim:
            world = World(url, sim, districts, dirs)
            _seed_app(world)
            world.sync("demo")
            world.sync("north")
            yield world
    finally:
        dbt_runner.ARTIFACTS_DIR = saved_artifacts
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_districts_and_schools_match_by_the_first_rule_that_finds_them_within_their_district(world):
    demo_id = load_records(world.dirs["demo"], "v3.0", "districts")[0]["id"]
    north_id = load_records(world.dirs["north"], "v3.1", "districts")[0]["id"]
    assert world.links("district") == {("demo", demo_id): (1, "nces_id", "rule"),
                                       ("north", north_id): (2, "name_state", "rule")}
    demo = {s["name"]: s["id"] for s in load_records(world.dirs["demo"], "v3.0", "schools")}
    north = {s["name"]: s["id"] for s in load_records(world.dirs["north"], "v3.1", "schools")}
    assert world.links("school") == {
        ("demo", demo["Maple Grove Elementary"]): (11, "clever_id", "rule"),  # Clever ID before NCES ID (12)
        ("demo", demo["Riverside Elementary"]): (13, "nces_id", "rule"),
        ("demo", demo["Bluebonnet High School"]): (14, "name", "rule"),
        ("north", north["Maple Grove Elementary"]): (21, "nces_id", "rule"),  # same NCES ID, other district
    }
    unmatched = set(world.query("SELECT entity, app_id, reason FROM clever_marts.rpt_match_unmatched "
                                "WHERE side = 'app' AND entity IN ('district', 'school')"))
    assert unmatched == {("district", 3, "no Clever district is linked to it"),
                         ("school", 12, "no Clever record is linked to it")}


def test_users_match_in_rule_order_never_across_districts_and_never_when_ambiguous(world):
    d, n = world.demo, world.north
    links = world.links()
    assert links[("demo", d["A"]["id"])] == (101, "sis_id", "rule")  # SIS ID before email (102)
    assert ("demo", d["B"]["id"]) not in links  # a teacher's SIS ID never matches a student
    assert ("demo", d["C"]["id"]) not in links
    assert links[("demo", d["E"]["id"])] == (107, "override", "override")  # the override wins over D's email
    assert ("demo", d["D"]["id"]) not in links and ("demo", d["F"]["id"]) not in links
    assert links[("north", n["S5"]["id"])] == (201, "sis_id", "rule")
    demo_s5 = _student(world.demo_users, "S100005")
    assert ("demo", demo_s5["id"]) not in links  # same SIS ID in demo, but app account 201 is north's
    assert 110 not in {app_id for app_id, *_ in links.values()}  # a north email on a demo account
    # north tries email before SIS IDs: Q's email beats P's SIS ID for account 202
    assert links[("north", n["Q"]["id"])] == (202, "email", "rule") and ("north", n["P"]["id"]) not in links
    assert ("north", n["R"]["id"]) not in links  # north does not use state IDs

    review = world.review()
    assert review[("demo", d["C"]["id"])] == ("ambiguous", [104, 105], "several app records match by state_id")
    hannahs = [u["id"] for u in world.demo_users if (u["name"]["first"], u["name"]["last"]) == ("Hannah", "Anderson")
               and u["roles"].get("student", {}).get("school") == hannah_school(world)]
    assert len(hannahs) == 2 and all(review[("demo", h)][:2] == ("ambiguous", [106]) for h in hannahs)
    assert review[("demo", d["D"]["id"])][0] == "conflict"
    assert review[("north", n["P"]["id"])] == (
        "conflict", [202], "the app record matches another Clever record by a stronger rule")
    unlinked = dict(world.query("SELECT clever_id, reason FROM clever_marts.rpt_match_unmatched "
                                "WHERE entity = 'user' AND side = 'clever'"))
    assert unlinked[d["F"]["id"]] == "unlinked by an override"
    assert unlinked[d["B"]["id"]] == "no app record matches any rule"
    progress = dict(world.query("SELECT coalesce(app_user_id::text, 'clever'), student_clever_id "
                                "FROM clever_marts.fct_student_progress"))
    assert progress == {"101": d["A"]["id"], "102": None, "clever": n["S5"]["id"], "107": d["E"]["id"]}


def test_a_teacher_who_is_also_a_district_admin_is_one_person_in_both_api_versions(world):
    people = {slug: (ids, roles, accounts) for slug, ids, roles, accounts in world.query(
        "SELECT district_slug, clever_ids, roles, app_user_ids FROM clever_marts.dim_people "
        "WHERE 'teacher' = ANY (roles) AND 'district_admin' = ANY (roles)")}
    demo_dana = sorted(u["id"] for u in world.demo_users if u["name"]["last"] == "Whitfield")
    north_dana = [u["id"] for u in world.north_users if u["name"]["last"] == "Whitfield"]
    assert len(demo_dana) == 2 and len(north_dana) == 1
    assert people == {"demo": (demo_dana, ["district_admin", "teacher"], [109]),
                      "north": (north_dana, ["district_admin", "teacher"], [204])}
    links = world.links()
    assert {links[("demo", cid)][0] for cid in demo_dana} == {109}  # both records keep the one account
    assert world.query("SELECT count(*) FROM clever_marts.dim_people WHERE district_slug = 'demo'")[0][0] == \
        len(world.demo_users) - 1


def test_co_teachers_sections_and_schools_have_no_maximum(world):
    teachers = len([u for u in world.north_users if "teacher" in u["roles"]])
    per_section = world.query("SELECT max(n) FROM (SELECT count(*) AS n FROM clever_marts.fct_enrollments "
                              "WHERE district_slug = 'north' AND role = 'teacher' GROUP BY section_id) AS s")
    assert teachers >= 12 and per_section == [(teachers,)]
    no_section = world.query(
        "SELECT count(*) FROM clever_marts.dim_users AS u WHERE u.district_slug = 'demo' AND u.is_student "
        "AND NOT EXISTS (SELECT 1 FROM clever_marts.fct_enrollments AS e WHERE e.district_slug = u.district_slug "
        "AND e.user_id = u.clever_id)")
    assert no_section == [(2,)]  # kept as users and people, with no enrollment rows
    several = world.query("SELECT max(cardinality(student_school_ids)), max(cardinality(teacher_school_ids)), "
                          "max(n) FROM clever_marts.dim_users, LATERAL (SELECT count(*) AS n FROM "
                          "clever_marts.fct_enrollments e WHERE e.district_slug = 'demo' AND e.user_id = clever_id) c "
                          "WHERE district_slug = 'demo'")
    assert several[0][0] >= 2 and several[0][1] >= 2 and several[0][2] >= 5


def test_missing_optional_fields_are_null_and_never_break_matching(world):
    # the sample's students with every optional field absent, null, and ""
    bare = {"5acc50e5578cbd836c9571da", "cd280fb4d86e182ac678e1f6", "2c6b2f7b264862d71ff6047f"}
    rows = world.query(
        "SELECT clever_id, email, middle_name, student_dob, student_grade, student_state_id, student_gender "
        "FROM clever_marts.dim_users WHERE district_slug = 'demo' AND clever_id = ANY (%s)", (list(bare),))
    assert {r[0] for r in rows} == bare and all(value is None for r in rows for value in r[1:])
    advisory = world.query("SELECT term_id, course_id FROM clever_marts.dim_sections "
                           "WHERE clever_id = '911faa814b44d6b273d042c8'")
    assert advisory == [(None, None)]
    keys = world.query("SELECT email_key, name_key IS NOT NULL FROM clever_staging.stg_app__users "
                       "WHERE app_user_id = 106")
    assert keys == [(None, True)]  # an app account with no email is still matched by name


def test_rebuilding_gives_the_same_matches(world):
    before = world.query("SELECT * FROM clever_marts.dim_user_matches ORDER BY district_slug, clever_id")
    history = world.query("SELECT count(*) FROM clever_snapshots.snap_match__user_links")
    build(WarehouseTarget.from_conninfo(world.url), district=world.districts["demo"])
    assert world.query("SELECT * FROM clever_marts.dim_user_matches ORDER BY district_slug, clever_id") == before
    assert world.query("SELECT count(*) FROM clever_snapshots.snap_match__user_links") == history


def test_links_are_kept_when_either_side_changes_later(world):
    d, n = world.demo, world.north
    before = world.links()
    since = dict(world.query("SELECT clever_id, matched_since FROM clever_marts.dim_user_matches"))
    world.execute("UPDATE app.users SET sis_id = 'S-RETYPED' WHERE app_user_id = 101")  # admin edit
    world.execute("INSERT INTO app.users (app_user_id, app_district_id, role, sis_id) "
                  "VALUES (111, 1, 'student', 'S100020')")  # a new account with A's SIS ID
    world.execute("DELETE FROM app.users WHERE app_user_id = 109")  # Dana's account is gone
    users = load_records(world.dirs["north"], "v3.1", "users")
    for user in users:
        if user["id"] == n["Q"]["id"]:
            user["email"] = "q.new@north-valley-usd.example"  # Clever side changes too
    write_records(world.dirs["north"], "v3.1", "users", users)
    world.sync("north")
    # Each district's matching is rebuilt by its own build: demo's app edits wait for demo.
    assert {k: v for k, v in world.links().items() if k[0] == "demo"} == \
        {k: v for k, v in before.items() if k[0] == "demo"}
    world.sync("demo")

    after = world.links()
    assert after[("demo", d["A"]["id"])] == (101, "sis_id", "retained")  # not moved to 111
    assert after[("north", n["Q"]["id"])] == (202, "email", "retained")
    assert ("north", n["P"]["id"]) not in after  # 202 stays Q's, the first person linked to it
    dana = [u["id"] for u in world.demo_users if u["name"]["last"] == "Whitfield"]
    assert all(("demo", cid) not in after for cid in dana)
    changed = {("demo", d["A"]["id"]), ("north", n["Q"]["id"])} | {("demo", cid) for cid in dana}
    assert {k: v for k, v in after.items() if k not in changed} == \
        {k: v for k, v in before.items() if k not in changed}
    new_since = dict(world.query("SELECT clever_id, matched_since FROM clever_marts.dim_user_matches"))
    assert new_since[d["A"]["id"]] == since[d["A"]["id"]] and new_since[n["Q"]["id"]] == since[n["Q"]["id"]]
    review = world.review()
    assert review[("demo", d["A"]["id"])] == (
        "conflict", [111], "the rules now find another app record; the earlier link is kept")
    assert review[("north", n["P"]["id"])] == (
        "conflict", [202], "the app record is already linked to another Clever record")
    # history: the first links are still in the snapshot of what the rules gave
    history = world.query("SELECT app_id, dbt_valid_to IS NULL FROM clever_snapshots.snap_match__user_links "
                          "WHERE clever_id = %s ORDER BY dbt_valid_from", (d["A"]["id"],))
    assert history == [(101, False), (111, True)]


def test_upgrading_drops_the_match_tables_under_their_old_names_and_keeps_every_link(world):
    # The warehouse as the project left it before the matches were renamed dim_*_matches:
    # the old tables, a BI user's view on one of them, and a deploy of another version.
    renamed = {"district_matches": "dim_district_matches", "school_matches": "dim_school_matches",
               "user_matches": "dim_user_matches"}
    before = {new: sorted(world.query(f"SELECT * FROM clever_marts.{new}")) for new in renamed.values()}
    assert all(before.values())
    for old, new in renamed.items():
        world.execute(f"CREATE TABLE clever_marts.{old} AS SELECT * FROM clever_marts.{new}")
    world.execute("CREATE VIEW clever_marts.linked_users AS SELECT clever_id FROM clever_marts.user_matches")
    world.execute("UPDATE clever_landing.dbt_deployments SET fingerprint = 'an earlier version'")

    assert dbt_runner.ensure_deployed(WarehouseTarget.from_conninfo(world.url)) is not None  # the deploy build
    assert world.query("SELECT " + ", ".join(f"to_regclass('clever_marts.{name}')::text"
                                             for name in [*renamed, "linked_users"])) == [(None,) * 4]
    assert {new: sorted(world.query(f"SELECT * FROM clever_marts.{new}")) for new in renamed.values()} == before


PEOPLE_TABLES = ("clever_intermediate.int_people", "clever_marts.dim_people", "clever_marts.dim_user_roles")


def test_people_tables_of_the_version_before_their_incremental_builds_are_upgraded_by_the_deploy(world):
    """The release that made the people tables incremental added their watermark column:
    a warehouse deployed before it has the tables without it. The next deploy recomputes
    every row (nothing is covered yet) and adds the column; nothing changes otherwise."""
    def people() -> list[list[tuple]]:
        return [world.query(f"SELECT * FROM {table} AS t ORDER BY t::text") for table in PEOPLE_TABLES]

    before = people()
    for table in PEOPLE_TABLES:
        world.execute(f"ALTER TABLE {table} DROP COLUMN snapshot_updated_at")
    world.execute("DELETE FROM clever_landing.dbt_deployments")  # as if this version was never deployed
    world.sync("demo")
    assert people() == before


def test_people_after_records_change_are_what_rebuilding_the_district_gives(world):
    """int_people, dim_people and dim_user_roles are incremental: a build recomputes only
    what may have changed. After one of Dana's records takes another email (one person
    becomes two), a staff record takes a teacher's email and name (two people become one),
    a student is renamed, another gets an app account and two roles are granted (to a
    Clever ID and to an account), the people and roles are exactly those a full rebuild of
    the district computes. Last in the module: it changes the district."""
    users = load_records(world.dirs["demo"], "v3.0", "users")
    dana = sorted((u for u in users if u["name"]["last"] == "Whitfield"), key=lambda u: u["id"])
    dana[1]["email"] = "dana.elsewhere@certification-isd.example"
    teacher = next(u for u in users if list(u["roles"]) == ["teacher"] and u["name"]["last"] != "Whitfield")
    staff = next(u for u in users if list(u["roles"]) == ["staff"])
    staff["email"], staff["name"] = teacher["email"], dict(teacher["name"])
    student = next(u for u in users if list(u["roles"]) == ["student"])
    student["name"]["last"] = "Renamed"
    write_records(world.dirs["demo"], "v3.0", "users", users)
    linked = _student(users, "S100084")  # a student of no change but a new app account
    world.execute("INSERT INTO app.users (app_user_id, app_district_id, role, sis_id) "
                  "VALUES (112, 1, 'student', 'S100084')")
    world.execute("INSERT INTO app.role_grants (user_clever_id, role, granted_by) VALUES (%s, 'coach', 'admin')",
                  (teacher["id"],))
    world.execute("INSERT INTO app.role_grants (app_user_id, role, granted_by) VALUES (112, 'peer_tutor', 'admin')")
    world.sync("demo")

    people = "SELECT * FROM clever_intermediate.int_people WHERE district_slug = 'demo' ORDER BY clever_id"
    marts = "SELECT * FROM clever_marts.dim_people WHERE district_slug = 'demo' ORDER BY person_id"
    roles = ("SELECT * FROM clever_marts.dim_user_roles WHERE district_slug = 'demo' "
             "ORDER BY clever_id, source, role, role_grant_id")
    incremental = world.query(people), world.query(marts), world.query(roles)
    person = {row[1]: row[2] for row in incremental[0]}
    assert person[dana[0]["id"]] != person[dana[1]["id"]]
    assert person[staff["id"]] == person[teacher["id"]] == teacher["id"]  # the teacher's record first on a tie
    assert person[student["id"]] == student["id"]
    accounts = {row[1]: row[12] for row in incremental[1]}
    assert accounts[linked["id"]] == [112] and linked["id"] != student["id"]
    roles_of = {(row[1], row[3], row[4]): row[2] for row in incremental[2]}  # (user, role, source): person
    assert roles_of[(teacher["id"], "coach", "app_grant")] == teacher["id"]
    assert roles_of[(linked["id"], "peer_tutor", "app_grant")] == linked["id"]
    assert roles_of[(staff["id"], "staff", "clever")] == teacher["id"]  # the staff record joined the teacher
    build(WarehouseTarget.from_conninfo(world.url), district=world.districts["demo"], full_refresh=True)
    assert (world.query(people), world.query(marts), world.query(roles)) == incremental
