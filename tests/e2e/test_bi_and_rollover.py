"""The BI layer through real Airflow runs of a school-year rollover.

Day 1 the sample district shares both school years. Day 2 (rollover clean-up) Clever stops
sharing last year's sections and terms and the students who graduated, and by mistake one
continuing student and one of this year's sections; the run is triggered with
allow_mass_archive, as the guard would stop it. Day 3 the mistakes are undone. A fourth run
fails on a revoked token. Then: rpt_rollover and the dashboard views against what the
simulator served, the clever_rollover_report DAG's HTML, and what the read-only role
clever_bi may and may not read.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from clever import runs
from clever.summary import summarize
from clever_devkit.runner import run_dag
from clever_devkit.simulator import CleverSimulator
from tests.conftest import DEMO_TOKEN, copy_sample_district, database
from tests.e2e.conftest import make_airflow
from tests.helpers import load_records, write_records

pytestmark = pytest.mark.e2e

ENDPOINTS = ("districts", "schools", "users", "sections", "terms", "courses")
METRICS = ("from_sections", "to_sections", "sections_ended", "sections_started", "sections_continuing",
           "from_students", "to_students", "students_stayed", "students_changed_school_out",
           "students_changed_school_in", "students_not_reenrolled", "new_students",
           "sections_archived", "sections_restored", "students_archived", "students_restored")


def school_year(day: str) -> str:
    year = int(day[:4]) - (1 if int(day[5:7]) < 7 else 0)
    return f"{year}-{(year + 1) % 100:02d}"


def teachers_of(section: dict) -> set[str]:
    return set(section.get("teachers") or []) | ({section["teacher"]} if section.get("teacher") else set())


class Rollover:
    """What was served on each day, and what the marts should say about it."""

    def __init__(self, day1: dict[str, list[dict]]):
        self.day1 = day1
        self.terms = {t["id"]: t for t in day1["terms"]}
        self.sections = {s["id"]: s for s in day1["sections"]}
        self.year_of = {sid: school_year(self.terms[s["term_id"]]["start_date"])
                        for sid, s in self.sections.items() if s.get("term_id")}
        last_year = {sid for sid, year in self.year_of.items() if year == "2025-26"}
        this_year = {sid for sid, year in self.year_of.items() if year == "2026-27"}
        self.last_year, self.this_year = last_year, this_year
        students_in = {year: {st for sid in ids for st in self.sections[sid].get("students") or []}
                       for year, ids in (("2025-26", last_year), ("2026-27", this_year))}
        self.graduates = students_in["2025-26"] - students_in["2026-27"]
        self.continuing = sorted(students_in["2025-26"] & students_in["2026-27"])[0]
        self.section_back = sorted(sid for sid in this_year if self.sections[sid].get("students"))[0]
        self.last_year_terms = {tid for tid, t in self.terms.items() if school_year(t["start_date"]) == "2025-26"}

    def day2(self) -> dict[str, list[dict]]:
        day = copy.deepcopy(self.day1)
        gone_users = self.graduates | {self.continuing}
        day["sections"] = [s for s in day["sections"]
                           if s["id"] not in self.last_year and s["id"] != self.section_back]
        for section in day["sections"]:
            section["students"] = [st for st in section.get("students") or [] if st not in gone_users]
        day["users"] = [u for u in day["users"] if u["id"] not in gone_users]
        day["terms"] = [t for t in day["terms"] if t["id"] not in self.last_year_terms]
        return day

    def day3(self) -> dict[str, list[dict]]:
        day = copy.deepcopy(self.day1)
        day["sections"] = [s for s in day["sections"] if s["id"] not in self.last_year]
        day["users"] = [u for u in day["users"] if u["id"] not in self.graduates]
        day["terms"] = [t for t in day["terms"] if t["id"] not in self.last_year_terms]
        return day

    def expected(self, from_ids: set[str], to_ids: set[str]) -> dict[str | None, dict[str, int]]:
        """rpt_rollover rows (by school_id; None = district) from the definitions. Rosters
        are day 1's: unshared rosters stay in the marts as archived enrollments."""
        school = {sid: s["school"] for sid, s in self.sections.items()}
        at: dict[str, dict[str, set[str]]] = {"from": defaultdict(set), "to": defaultdict(set)}
        for side, ids in (("from", from_ids), ("to", to_ids)):
            for sid in ids:
                at[side][school[sid]] |= set(self.sections[sid].get("students") or [])
        anywhere_from = set().union(*at["from"].values())
        anywhere_to = set().union(*at["to"].values())
        archived_sections, restored_sections = self.last_year, {self.section_back}
        archived_students, restored_students = self.graduates, {self.continuing}

        def counts(sec_from, sec_to, f, t, stayed, out, into) -> dict[str, int]:
            return {
                "from_sections": len(sec_from), "to_sections": len(sec_to),
                "sections_ended": len(sec_from - sec_to), "sections_started": len(sec_to - sec_from),
                "sections_continuing": len(sec_from & sec_to),
                "from_students": len(f), "to_students": len(t), "students_stayed": stayed,
                "students_changed_school_out": out, "students_changed_school_in": into,
                "students_not_reenrolled": len(f - anywhere_to), "new_students": len(t - anywhere_from),
                "sections_archived": len((sec_from | sec_to) & archived_sections),
                "sections_restored": len((sec_from | sec_to) & restored_sections),
                "students_archived": len((f | t) & archived_students),
                "students_restored": len((f | t) & restored_students),
            }

        rows = {}
        for sc in {school[s] for s in from_ids | to_ids}:
            f, t = at["from"][sc], at["to"][sc]
            rows[sc] = counts({s for s in from_ids if school[s] == sc}, {s for s in to_ids if school[s] == sc},
                              f, t, len(f & t), len((f - t) & anywhere_to), len((t - f) & anywhere_from))
        kept = {st for st in anywhere_from & anywhere_to
                if any(st in at["from"][sc] and st in at["to"][sc] for sc in at["from"])}
        moved = len((anywhere_from & anywhere_to) - kept)
        rows[None] = counts(from_ids, to_ids, anywhere_from, anywhere_to, len(kept), moved, moved)
        return rows

    def term_sections(self, start: str, end: str) -> set[str]:
        """Sections whose term overlaps [start, end] by more than a boundary day."""
        ids = set()
        for sid, s in self.sections.items():
            term = self.terms.get(s.get("term_id"))
            if term and term["start_date"] < end and term["end_date"] > start:
                ids.add(sid)
        return ids


def revoked_token_run(airflow, sim) -> None:
    """A run that fails in extraction, by the DAG's steps called directly (a fifth Airflow
    run would only add minutes; the DAG's failure paths have their own tests)."""
    from clever import pipeline
    from clever.config import load_districts
    from clever.extract import ExtractionError

    sim.revoke("demo")
    district = load_districts(Path(airflow.env["CLEVER_DISTRICTS_FILE"]))[0]
    url = airflow.warehouse_url
    run = runs.start_run(url, district, None, external_run_id="manual__revoked")
    for endpoint in district.endpoints:
        with pytest.raises(ExtractionError, match="rejected this district's token"):
            pipeline.extract(url, district, run, endpoint, sim.base_url, DEMO_TOKEN)
    with pytest.raises(runs.RunNotComplete):
        runs.close_extraction(url, run)
    summarize(url, run, None)


@pytest.fixture(scope="module")
def rollover_run(pg_server, airflow_home, tmp_path_factory):
    """Runs the four syncs and the report DAG once for every test in this module."""
    tmp_path = tmp_path_factory.mktemp("rollover")
    district_dir = copy_sample_district(tmp_path / "district")
    with database(pg_server) as warehouse_url, CleverSimulator({"demo": (DEMO_TOKEN, district_dir)}, seed=99) as sim:
        airflow = make_airflow(airflow_home, warehouse_url, tmp_path, sim, {"demo": DEMO_TOKEN})
        day1 = {e: load_records(district_dir, "v3.0", e) for e in ENDPOINTS}
        plan = Rollover(day1)
        served = {"day1": day1}
        airflow.sync()

        served["day2"] = plan.day2()
        for endpoint, records in served["day2"].items():
            write_records(district_dir, "v3.0", endpoint, records)
        airflow.sync(conf={"allow_mass_archive": True})  # rollover archives half the sections: the guard trips

        served["day3"] = plan.day3()
        for endpoint, records in served["day3"].items():
            write_records(district_dir, "v3.0", endpoint, records)
        airflow.sync()

        revoked_token_run(airflow, sim)

        report = run_dag("clever_rollover_report", conf={"districts": ["demo"]}, env=dict(airflow.env),
                         logical_date=datetime(2026, 6, 1, tzinfo=UTC), capture=True)
        assert report.returncode == 0, report.stdout[-6000:]
        yield airflow, plan, served, Path(airflow.env["CLEVER_ARTIFACTS_DIR"]) / "reports"


def rollover_rows(airflow, comparison: str, from_period: str) -> dict[str | None, dict[str, int]]:
    rows = airflow.query(
        f"SELECT school_id, {', '.join(METRICS)} FROM clever_marts.rpt_rollover "
        "WHERE district_slug = 'demo' AND comparison = %s AND from_period = %s", (comparison, from_period))
    return {r[0]: dict(zip(METRICS, r[1:], strict=True)) for r in rows}


def test_school_year_rollover_counts_every_student_and_section(rollover_run):
    airflow, plan, _, _ = rollover_run
    pairs = airflow.query("SELECT DISTINCT from_period, to_period FROM clever_marts.rpt_rollover "
                          "WHERE comparison = 'school_year'")
    assert pairs == [("2025-26", "2026-27")]
    expected = plan.expected(plan.last_year, plan.this_year)
    assert rollover_rows(airflow, "school_year", "2025-26") == expected
    district = expected[None]
    # the sample district's rollover, as its README describes it
    assert district["students_not_reenrolled"] == len(plan.graduates) > 0
    assert district["new_students"] > 0 and district["students_changed_school_out"] >= 5
    assert district["sections_archived"] == len(plan.last_year) and district["sections_restored"] == 1
    assert district["students_archived"] == len(plan.graduates) and district["students_restored"] == 1


def test_term_rollover_keeps_full_year_sections_running_into_spring(rollover_run):
    airflow, plan, _, _ = rollover_run
    terms = {t["name"]: t for t in plan.day1["terms"]}
    fall, spring = terms["2025-26 Fall Semester"], terms["2025-26 Spring Semester"]
    key = f"{fall['start_date']}..{fall['end_date']}"
    expected = plan.expected(plan.term_sections(fall["start_date"], fall["end_date"]),
                             plan.term_sections(spring["start_date"], spring["end_date"]))
    assert rollover_rows(airflow, "term", key) == expected
    assert expected[None]["sections_continuing"] > 0  # the full-year sections
    assert expected[None]["students_stayed"] == expected[None]["from_students"]
    names = dict(airflow.query("SELECT DISTINCT from_period_name, to_period_name FROM clever_marts.rpt_rollover "
                               "WHERE comparison = 'term'"))
    assert names["2025-26 Fall Semester"] == "2025-26 Spring Semester"
    assert names["2025-26 Spring Semester"] == "2026-27 Full Year"  # the longest term starting next


def test_enrollments_teacher_loads_and_co_teaching_match_what_clever_shares(rollover_run):
    airflow, plan, served, _ = rollover_run
    day3 = {s["id"]: s for s in served["day3"]["sections"]}
    grade_of = {sid: s.get("grade") for sid, s in plan.sections.items()}

    expected_groups: dict[tuple, list] = defaultdict(lambda: [0, 0, set()])
    for sid, section in plan.sections.items():
        key = (section["school"], section.get("term_id"), grade_of[sid])
        for student in section.get("students") or []:
            active = sid in day3
            expected_groups[key][0 if active else 1] += 1
            if active:
                expected_groups[key][2].add(student)
    rows = airflow.query("SELECT school_id, term_id, section_grade, active_enrollments, archived_enrollments, "
                         "active_students FROM clever_reports.rpt_enrollments_by_school_grade_term")
    assert {r[:3]: list(r[3:]) for r in rows} == {k: [a, b, len(s)] for k, (a, b, s) in expected_groups.items()}

    loads: dict[tuple, list] = defaultdict(lambda: [set(), set(), set(), 0])
    for sid, section in day3.items():
        for teacher in teachers_of(section):
            load = loads[(teacher, section["school"], section.get("term_id"))]
            load[0].add(sid)
            if section.get("teacher") == teacher:
                load[1].add(sid)
            load[2] |= set(section.get("students") or [])
            load[3] += len(section.get("students") or [])
    rows = airflow.query("SELECT teacher_id, school_id, term_id, sections, primary_sections, distinct_students, "
                         "student_seats FROM clever_reports.rpt_teacher_loads")
    assert {r[:3]: list(r[3:]) for r in rows} == {
        k: [len(a), len(b), len(c), seats] for k, (a, b, c, seats) in loads.items()}

    co_taught = {sid: s for sid, s in day3.items() if len(teachers_of(s)) > 1}
    rows = airflow.query("SELECT section_id, primary_teacher_id, co_teacher_ids, student_count "
                         "FROM clever_reports.rpt_co_taught_sections")
    assert {r[0]: r[1:] for r in rows} == {
        sid: (s.get("teacher"), sorted(teachers_of(s) - {s.get("teacher")}), len(s.get("students") or []))
        for sid, s in co_taught.items()}
    assert "746fbcb27aa4cbbe52c21813" in co_taught  # the sample's team-taught section


def test_active_vs_archived_over_time_follows_the_archive_and_restore(rollover_run):
    airflow, plan, served, _ = rollover_run
    rows = airflow.query("SELECT data_type, sum(added_that_day), sum(archived_that_day), sum(restored_that_day), "
                         "(array_agg(active_records ORDER BY day DESC))[1], "
                         "(array_agg(archived_records ORDER BY day DESC))[1] "
                         "FROM clever_reports.rpt_active_vs_archived_daily WHERE district_slug = 'demo' GROUP BY 1")
    by_type = {r[0]: tuple(int(v) for v in r[1:]) for r in rows}
    assert set(by_type) == {"districts", "schools", "users", "sections", "terms", "courses", "enrollments"}
    sections = len(plan.sections)
    # every section first seen once; last year's and the mistaken one archived; that one restored
    assert by_type["sections"] == (sections, len(plan.last_year) + 1, 1,
                                   len(served["day3"]["sections"]), len(plan.last_year))
    assert by_type["users"] == (len(plan.day1["users"]), len(plan.graduates) + 1, 1,
                                len(served["day3"]["users"]), len(plan.graduates))
    assert by_type["terms"][1:] == (len(plan.last_year_terms), 0, 3, len(plan.last_year_terms))
    assert by_type["schools"] == (5, 0, 0, 5, 0)


def test_sync_health_shows_every_run_its_guard_trips_and_failures(rollover_run):
    airflow, _, served, _ = rollover_run
    runs = airflow.query(
        "SELECT outcome, failed_step, rows_landed, guard_trips, guard_overrides, guard_tripped_data_types, "
        "allow_mass_archive, records_archived, records_restored, endpoints_failed, failed_endpoints, "
        "duration_seconds IS NOT NULL FROM clever_reports.rpt_sync_runs ORDER BY sync_run_id")
    landed = {day: sum(len(records) for records in data.values()) for day, data in served.items()}
    assert [r[:3] for r in runs] == [("succeeded", None, landed["day1"]), ("succeeded", None, landed["day2"]),
                                     ("succeeded", None, landed["day3"]), ("failed", "extract", 0)]
    assert runs[0][3:5] == (0, 0) and not runs[0][6]
    rollover_day = runs[1]
    assert rollover_day[3] == rollover_day[4] == 2 and rollover_day[5] == ["enrollments", "sections"]
    assert rollover_day[6] is True and rollover_day[7] > 0 and rollover_day[8] == 0
    assert runs[2][7] == 0 and runs[2][8] > 0  # day 3 only restores
    revoked = runs[3]
    assert revoked[9] == 6 and revoked[10] == sorted(ENDPOINTS) and revoked[11] is True
    kinds = airflow.query("SELECT DISTINCT error_kind FROM clever_reports.rpt_sync_endpoint_runs "
                          "WHERE sync_run_id = (SELECT max(sync_run_id) FROM clever_landing.sync_runs)")
    assert kinds == [("auth",)]
    per_endpoint = dict(airflow.query("SELECT endpoint, rows_landed FROM clever_reports.rpt_sync_endpoint_runs "
                                      "WHERE sync_run_id = (SELECT min(sync_run_id) FROM clever_landing.sync_runs)"))
    assert per_endpoint == {e: len(records) for e, records in served["day1"].items()}


def test_report_dag_writes_the_rollover_as_html_with_charts(rollover_run):
    airflow, plan, _, reports = rollover_run
    page = (reports / "rollover_demo.html").read_text(encoding="utf-8")
    assert "<title>Rollover report: Certification ISD</title>" in page
    assert "School year 2025-26 → 2026-27" in page
    assert len(re.findall(r"<img alt='[^']+' src='data:image/png;base64,[A-Za-z0-9+/=]{2000,}'>", page)) == 4
    cards = {m: int(v) for m, v in re.findall(r"data-metric='(\w+)'><div class='n'>(\d+)<", page)}
    district = rollover_rows(airflow, "school_year", "2025-26")[None]
    assert cards and cards == {m: district[m] for m in cards}
    for school in plan.day1["schools"]:
        assert school["name"] in page
    # The page says in place why school rows can add up to more than the district's
    # (tests/unit/test_rollover_note.py: with the numbers when they do).
    assert "id='double-count'>A student enrolled in sections at two schools counts at each" in page


def test_report_for_a_district_without_two_periods_says_so(rollover_run, tmp_path):
    from clever.rollover_report import write_report

    airflow, _, _, _ = rollover_run
    result = write_report(airflow.warehouse_url, "springfield", out_dir=tmp_path)
    assert result.from_period is None and result.path == tmp_path / "rollover_springfield.html"
    assert "No rollover to report yet" in result.path.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="2025-26"):
        write_report(airflow.warehouse_url, "demo", from_period="1999-00", out_dir=tmp_path)


def test_bi_role_reads_marts_and_reports_and_nothing_else(rollover_run):
    airflow, _, _, _ = rollover_run
    login = f"dashboard_{uuid.uuid4().hex[:8]}"  # roles are cluster-wide; the test server is shared
    with psycopg.connect(airflow.warehouse_url, autocommit=True) as conn:
        assert conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'clever_bi'").fetchone() == (False,)
        conn.execute(f"CREATE ROLE {login} LOGIN PASSWORD '{login}-pw' IN ROLE clever_bi")
    try:
        readable = airflow.query(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'v', 'm', 'p') AND n.nspname LIKE 'clever%%' "
            "AND has_table_privilege(%s, c.oid, 'SELECT')", (login,))
        assert {schema for schema, _ in readable} == {"clever_marts", "clever_reports"}
        everything = airflow.query(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'v', 'm', 'p') AND n.nspname IN ('clever_marts', 'clever_reports')")
        assert set(readable) == set(everything)  # after four dbt builds rebuilt every mart table

        bi_url = re.sub(r"://[^@/]*@", f"://{login}:{login}-pw@", airflow.warehouse_url)
        with psycopg.connect(bi_url, autocommit=True) as bi:
            for schema, relation in everything:
                bi.execute(f'SELECT * FROM {schema}."{relation}" LIMIT 1')
            assert bi.execute("SELECT count(*) FROM clever_reports.rpt_sync_runs").fetchone()[0] == 4
            for refused in ("clever_landing.users", "clever_landing.sync_runs", "clever_staging.stg_clever__users",
                            "clever_snapshots.snap_clever__users"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    bi.execute(f"SELECT * FROM {refused} LIMIT 1")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bi.execute("DELETE FROM clever_marts.rpt_rollover")
            writable = bi.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'v', 'm', 'p') AND n.nspname LIKE 'clever%%' AND has_table_privilege("
                "c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')").fetchall()
            assert writable == []
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bi.execute("CREATE TABLE clever_reports.mine (x int)")
    finally:
        with psycopg.connect(airflow.warehouse_url, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {login}")


def test_report_views_hold_no_raw_records_or_student_details(rollover_run):
    airflow, _, _, _ = rollover_run
    def columns(where: str) -> set[tuple[str, str, str]]:
        return set(airflow.query("SELECT table_name, column_name, data_type FROM information_schema.columns "
                                 f"WHERE {where}"))

    report_columns = columns("table_schema = 'clever_reports' OR "
                             "(table_schema = 'clever_marts' AND table_name = 'rpt_rollover')")
    # what dim_users holds that no other mart does: names, emails, birth dates, demographics...
    personal = ({c for _, c, _ in columns("table_schema = 'clever_marts' AND table_name = 'dim_users'")}
                - {c for _, c, _ in columns("table_schema = 'clever_marts' AND table_name = 'dim_schools'")})
    assert {"email", "first_name", "student_dob", "student_race"} <= personal
    leaks = {c for c in report_columns if c[1] in personal | {"raw", "error"} or c[2] in ("json", "jsonb")}
    assert report_columns and leaks == set()


def test_the_reports_own_dbt_tests_pass(rollover_run):
    # They only warn in a build (a report bug must not stop syncs), so check them here.
    import json

    airflow, _, _, _ = rollover_run
    artifacts = Path(airflow.env["CLEVER_ARTIFACTS_DIR"])
    manifest = json.loads((artifacts / "dbt_target" / "manifest.json").read_text())  # the deploy's
    report_tests = {uid for uid, node in manifest["nodes"].items()  # the reports' and rpt_rollover's
                    if node["resource_type"] == "test"
                    and (node["fqn"][1] == "reports" or node["fqn"][1:3] == ["marts", "rollover"])}
    last_build = artifacts / "dbt_builds" / "demo" / "run_results.json"  # the district's last build
    statuses = {r["unique_id"]: r["status"] for r in json.loads(last_build.read_text())["results"]}
    assert len(report_tests) >= 20
    assert {uid: statuses.get(uid) for uid in report_tests} == dict.fromkeys(report_tests, "pass")
