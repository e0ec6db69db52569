"""A District SSO district through real Airflow runs, in the warehouse of a Secure Sync
district: Clever serves it with an SSO token's scope (districts and users only; 403
"Resource not in token's scopes" elsewhere), and its users have names, emails (not all)
and roles, nothing else.

Day 1 it syncs users with no schools, sections or terms required, validated with the SSO
suite, and matches the application's accounts by Clever ID and by email; day 2 Clever
stops sharing a user, who is archived (nothing else changes); day 3 the user is back and
restored, in a run that also asks for sections, which Clever refuses as out of scope
without failing the run. The roster reports show nothing for it and no dbt test warns;
the Secure Sync district beside it keeps every row and still syncs unchanged."""

from __future__ import annotations

import shutil

import pytest

from clever_devkit.simulator import SAMPLE_SSO_DISTRICT_DIR, CleverSimulator, DistrictSpec
from tests.conftest import DEMO_TOKEN, copy_sample_district
from tests.e2e.conftest import make_airflow
from tests.helpers import load_records, write_records

pytestmark = pytest.mark.e2e

SSO = "sso_demo"
SSO_TOKEN = "test-sso-e2e-token-7c6b5a4d3e2f-never-log-me"
ROSTER_REPORTS = ("clever_reports.rpt_teacher_loads", "clever_reports.rpt_co_taught_sections",
                  "clever_reports.rpt_enrollments_by_school_grade_term", "clever_marts.rpt_rollover")
ROSTER_MARTS = ("dim_schools", "dim_sections", "dim_terms", "dim_courses", "fct_enrollments")


@pytest.fixture
def sso_dir(tmp_path):
    return shutil.copytree(SAMPLE_SSO_DISTRICT_DIR, tmp_path / "sso", ignore=shutil.ignore_patterns("*.md"))


@pytest.fixture
def two_districts(airflow_home, synced_warehouse_url, sso_dir, tmp_path):
    """The demo district (Secure Sync, synced once already) and the sample District SSO
    district, served by one simulator, in one warehouse."""
    demo_dir = copy_sample_district(tmp_path / "demo")
    specs = [DistrictSpec("demo", DEMO_TOKEN, demo_dir), DistrictSpec(SSO, SSO_TOKEN, sso_dir, integration="sso")]
    with CleverSimulator(specs, seed=1234) as simulator:
        yield make_airflow(airflow_home, synced_warehouse_url, tmp_path, simulator,
                           {"demo": DEMO_TOKEN, SSO: SSO_TOKEN}, per_district={SSO: {"integration": "sso"}})


def demo_state(airflow) -> dict[str, list[tuple]]:
    """Every row of the demo district's history and marts."""
    state = {}
    for table in ("districts", "schools", "users", "sections", "terms", "courses", "section_enrollments"):
        state[table] = sorted(airflow.query(f"SELECT * FROM clever_snapshots.snap_clever__{table} "
                                            "WHERE district_slug = 'demo'"), key=repr)
    for mart in ("dim_users", "dim_schools", "dim_sections", "fct_enrollments", "dim_people", "dim_user_matches"):
        state[mart] = sorted(airflow.query(f"SELECT * FROM clever_marts.{mart} WHERE district_slug = 'demo'"),
                             key=repr)
    return state


def last_run(airflow, slug: str) -> tuple:
    return airflow.query("SELECT s.sync_run_id, r.integration, r.endpoints, s.status, s.summary "
                         "FROM clever_landing.run_summaries AS s JOIN clever_landing.sync_runs AS r "
                         "USING (sync_run_id) WHERE s.district_slug = %s ORDER BY s.sync_run_id DESC LIMIT 1",
                         (slug,))[0]


def sso_users(airflow) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in airflow.query(
        "SELECT clever_id, is_archived, email, first_name, last_name, roles, version_valid_from "
        "FROM clever_marts.dim_users WHERE district_slug = %s", (SSO,))}


def seed_app(airflow, users: list[dict]) -> dict[str, object]:
    """The application's district for the SSO district (linked by Clever ID), a school it
    has (Clever sends an SSO app none), an account provisioned from Clever (Clever ID) and
    a legacy account known only by its email, written differently."""
    district_id = users[0]["district"]
    emails = [u.get("email") for u in users]
    by_email = next(u for u in users if u.get("email") and "teacher" in u["roles"] and emails.count(u["email"]) == 1)
    by_id = next(u for u in users if "student" in u["roles"] and not u.get("email"))
    app_district = airflow.scalar("INSERT INTO app.districts (name, clever_id) VALUES ('SSO USD (app)', %s) "
                                  "RETURNING app_district_id", (district_id,))
    airflow.query("INSERT INTO app.schools (app_district_id, name) VALUES (%s, 'Hilltop (app only)') RETURNING 1",
                  (app_district,))
    legacy = airflow.scalar("INSERT INTO app.users (app_district_id, role, first_name, last_name, email) "
                            "VALUES (%s, 'teacher', 'Legacy', 'Account', %s) RETURNING app_user_id",
                            (app_district, f"  {by_email['email'].upper()} "))
    provisioned = airflow.scalar("INSERT INTO app.users (app_district_id, role, clever_id) VALUES (%s, 'student', %s) "
                                 "RETURNING app_user_id", (app_district, by_id["id"]))
    return {"app_district": app_district, "by_email": by_email["id"], "legacy": legacy, "by_id": by_id["id"],
            "provisioned": provisioned}


def test_a_district_sso_district_syncs_archives_restores_and_matches_beside_a_secure_sync_one(
        two_districts, sso_dir):
    airflow = two_districts
    users = load_records(sso_dir, "v3.0", "users")
    ids = {u["id"] for u in users}
    demo_before = demo_state(airflow)
    app = seed_app(airflow, users)

    # Day 1: the district and its users; no schools, sections or terms were asked for.
    airflow.sync(SSO)
    run, integration, endpoints, status, summary = last_run(airflow, SSO)
    assert (integration, endpoints, status) == ("sso", ["districts", "users"], "succeeded")
    assert summary["quarantined"] == {} and summary["validation_warnings"] == {}
    assert summary["dbt_test_warnings"] == {}, "no roster noise: no dbt test warns for an sso district"
    assert summary["history"]["users"]["added"] == len(users)
    rules = {r[0] for r in airflow.query("SELECT description FROM clever_landing.validation_results "
                                         "WHERE sync_run_id = %s AND endpoint = 'users'", (run,))}
    assert rules and not any("school" in rule and "refers to" in rule for rule in rules)  # the SSO suite
    day1 = sso_users(airflow)
    assert set(day1) == ids and not any(archived for archived, *_ in day1.values())
    no_email = [u["id"] for u in users if not u.get("email")]
    assert len(no_email) >= 10 and all(day1[i][1] is None for i in no_email)
    some = next(u for u in users if u.get("email"))
    assert day1[some["id"]][1:5] == (some["email"], some["name"]["first"], some["name"]["last"],
                                     sorted(some["roles"]))
    for mart in ROSTER_MARTS:
        assert airflow.scalar(f"SELECT count(*) FROM clever_marts.{mart} WHERE district_slug = %s", (SSO,)) == 0
    assert airflow.scalar("SELECT count(*) FROM clever_marts.dim_people WHERE district_slug = %s", (SSO,)) > 0
    assert airflow.scalar("SELECT count(DISTINCT clever_id) FROM clever_marts.dim_people, unnest(clever_ids) "
                          "AS ids(clever_id) WHERE district_slug = %s", (SSO,)) == len(users)

    # Matching: the district by Clever ID, a user by Clever ID, a legacy account by email,
    # with the sso district's default user rules.
    assert airflow.scalar("SELECT rules -> 'users' FROM clever_landing.match_settings WHERE district_slug = %s",
                          (SSO,)) == [{"rule": "clever_id", "confidence": 1.0}, {"rule": "email", "confidence": 0.9}]
    assert airflow.query("SELECT app_district_id FROM clever_marts.dim_district_matches WHERE district_slug = %s",
                         (SSO,)) == [(app["app_district"],)]
    matches = {cid: (app_user, rule) for cid, app_user, rule in airflow.query(
        "SELECT clever_id, app_user_id, rule FROM clever_marts.dim_user_matches WHERE district_slug = %s", (SSO,))}
    assert matches == {app["by_email"]: (app["legacy"], "email"), app["by_id"]: (app["provisioned"], "clever_id")}
    unmatched_school = airflow.query("SELECT reason FROM clever_marts.rpt_match_unmatched WHERE entity = 'school' "
                                     "AND side = 'app' AND district_slug = %s", (SSO,))
    assert unmatched_school == [("its Clever district is District SSO (integration sso): Clever sends no schools",)]

    # BI: told apart by integration; no roster rows for the SSO district.
    assert dict(airflow.query("SELECT district_slug, integration FROM clever_reports.rpt_district_health")) == {
        "demo": "secure_sync", SSO: "sso"}
    assert airflow.query("SELECT integration, outcome, out_of_scope_endpoints FROM clever_reports.rpt_sync_runs "
                         "WHERE sync_run_id = %s", (run,)) == [("sso", "succeeded", [])]
    for report in ROSTER_REPORTS:
        assert airflow.scalar(f"SELECT count(*) FROM {report} WHERE district_slug = %s", (SSO,)) == 0, report
    assert {r[0] for r in airflow.query("SELECT DISTINCT data_type FROM clever_reports.rpt_active_vs_archived_daily "
                                        "WHERE district_slug = %s", (SSO,))} == {"districts", "users"}

    # Day 2: Clever stops sharing the user matched by email; only that user changes.
    write_records(sso_dir, "v3.0", "users", [u for u in users if u["id"] != app["by_email"]])
    airflow.sync(SSO)
    day2 = sso_users(airflow)
    assert {i for i, (archived, *_) in day2.items() if archived} == {app["by_email"]}
    assert {i for i in ids if day2[i][-1] != day1[i][-1]} == {app["by_email"]}
    assert airflow.query("SELECT app_user_id FROM clever_marts.dim_user_matches WHERE clever_id = %s",
                         (app["by_email"],)) == [(app["legacy"],)]  # the archived user keeps the account

    # Day 3: the user is shared again and restored; the run also asks for sections, which
    # the SSO token cannot read: out of scope, not a failure.
    write_records(sso_dir, "v3.0", "users", users)
    airflow.sync(SSO, conf={"endpoints": ["districts", "users", "sections"]})
    run, _, endpoints, status, summary = last_run(airflow, SSO)
    assert (endpoints, status) == (["districts", "users", "sections"], "succeeded")
    assert summary["endpoints"]["sections"]["status"] == "out_of_scope"
    assert summary["approved_endpoints"] == ["districts", "users"]
    assert airflow.query("SELECT status, error_kind FROM clever_reports.rpt_sync_endpoint_runs WHERE sync_run_id "
                         "= %s AND endpoint = 'sections'", (run,)) == [("out_of_scope", "out_of_scope")]
    assert airflow.query("SELECT out_of_scope_endpoints, endpoints_failed FROM clever_reports.rpt_sync_runs "
                         "WHERE sync_run_id = %s", (run,)) == [(["sections"], 0)]
    day3 = sso_users(airflow)
    assert not any(archived for archived, *_ in day3.values())
    assert [r[0] for r in airflow.query(
        "SELECT dbt_is_deleted FROM clever_snapshots.snap_clever__users WHERE district_slug = %s AND clever_id = %s "
        "ORDER BY dbt_valid_from", (SSO, app["by_email"]))] == ["False", "True", "False"]
    assert airflow.scalar("SELECT count(*) FROM clever_snapshots.snap_clever__users WHERE district_slug = %s",
                          (SSO,)) == len(users) + 2
    assert airflow.scalar("SELECT count(*) FROM clever_marts.dim_sections WHERE district_slug = %s", (SSO,)) == 0

    # The Secure Sync district beside it: untouched by three SSO builds, and still syncs
    # unchanged (no history written, nothing out of scope).
    assert demo_state(airflow) == demo_before
    airflow.sync("demo")
    _, integration, _, status, summary = last_run(airflow, "demo")
    assert (integration, status) == ("secure_sync", "succeeded")
    assert {e["status"] for e in summary["endpoints"].values()} == {"completed"}
    assert all(change["history_rows"] == 0 for change in summary["history"].values())
    assert demo_state(airflow)["section_enrollments"] == demo_before["section_enrollments"]
