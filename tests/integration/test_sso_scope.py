"""A District SSO district's extraction and validation on real PostgreSQL, the simulator
serving the district with an SSO token's scope, and real Great Expectations: an endpoint
outside the scope that Clever refuses is not a failure for an sso district (it stays one
for a Secure Sync district), and its users are validated with the SSO suite."""

from __future__ import annotations

import shutil

import psycopg
import pytest

from clever.client import CleverClient
from clever.extract import ExtractionError, extract_endpoint
from clever.runs import completed_endpoints, finish_sync_run, start_sync_run
from clever.validation import ValidationFailed, validate_run
from clever.warehouse import ensure_landing_schema
from clever_devkit.simulator import SAMPLE_SSO_DISTRICT_DIR, CleverSimulator, DistrictSpec
from tests.helpers import load_records

SSO_TOKEN = "test-sso-token-0a1b2c3d4e5f-never-log-me"


@pytest.fixture
def conn(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as connection:
        ensure_landing_schema(connection)
        yield connection


@pytest.fixture
def sso_dir(tmp_path):
    return shutil.copytree(SAMPLE_SSO_DISTRICT_DIR, tmp_path / "sso", ignore=shutil.ignore_patterns("*.md"))


@pytest.fixture
def sso_simulator(sso_dir):
    with CleverSimulator([DistrictSpec("sso", SSO_TOKEN, sso_dir, integration="sso")]) as simulator:
        yield simulator


def sync(conn, simulator, integration, endpoints, api_version="v3.0"):
    """Start a run of district ``sso`` as ``integration`` and extract ``endpoints``; return
    the run, each endpoint's outcome (its result, or the ExtractionError) and the run's status."""
    run = start_sync_run(conn, "sso", api_version, endpoints, integration=integration)
    outcomes = {}
    with CleverClient(simulator.base_url, SSO_TOKEN, district="sso", api_version=api_version, page_size=50,
                      backoff_initial=0.01, backoff_max=0.05, max_attempts=2) as client:
        for endpoint in endpoints:
            try:
                outcomes[endpoint] = extract_endpoint(conn, client, run, endpoint)
            except ExtractionError as exc:
                outcomes[endpoint] = exc
    return run, outcomes, finish_sync_run(conn, run.sync_run_id)


def endpoint_runs(conn, run):
    return {e: (status, rows, error) for e, status, rows, error in conn.execute(
        "SELECT endpoint, status, row_count, error FROM clever_landing.endpoint_runs WHERE sync_run_id = %s",
        (run.sync_run_id,))}


def test_an_endpoint_outside_the_sso_scope_is_out_of_scope_not_a_failure(conn, sso_simulator, sso_dir):
    run, outcomes, status = sync(conn, sso_simulator, "sso", ["districts", "users", "sections", "terms"])
    assert status == "completed"
    assert completed_endpoints(conn, run.sync_run_id) == {"districts", "users"}
    tracked = endpoint_runs(conn, run)
    users = load_records(sso_dir, "v3.0", "users")
    assert tracked["users"][:2] == ("completed", len(users))
    for endpoint in ("sections", "terms"):
        assert outcomes[endpoint].out_of_scope and outcomes[endpoint].rows == 0
        state, rows, reason = tracked[endpoint]
        assert (state, rows) == ("out_of_scope", 0)
        assert reason.startswith(f"out of scope: Clever refused '{endpoint}' to this sso district's token (HTTP 403)")
        assert conn.execute(f"SELECT count(*) FROM clever_landing.{endpoint}").fetchone() == (0,)
    landed = conn.execute("SELECT clever_id FROM clever_landing.users WHERE sync_run_id = %s ORDER BY clever_id",
                          (run.sync_run_id,)).fetchall()
    assert [r[0] for r in landed] == [u["id"] for u in users]


def test_the_same_refusal_fails_a_secure_sync_district_naming_the_scope(conn, sso_simulator):
    run, outcomes, status = sync(conn, sso_simulator, "secure_sync", ["districts", "users", "sections"])
    assert status == "failed"
    assert isinstance(outcomes["sections"], ExtractionError)
    state, _, error = endpoint_runs(conn, run)["sections"]
    assert state == "failed"
    assert "Clever district 'sso', endpoint 'sections': HTTP 403: Resource not in token's scopes" in error
    assert "set integration: sso" in error and SSO_TOKEN not in error
    assert conn.execute("SELECT error FROM clever_landing.sync_runs WHERE sync_run_id = %s",
                        (run.sync_run_id,)).fetchone() == ("incomplete endpoints: sections",)


def test_a_rejected_token_fails_an_sso_district_inside_and_outside_its_scope(conn, sso_simulator):
    sso_simulator.revoke("sso")  # the token no longer works: every endpoint answers 401
    run, outcomes, status = sync(conn, sso_simulator, "sso", ["districts", "users", "sections"])
    assert status == "failed"
    # a rejected token is never "out of scope", not even for an endpoint outside the scope
    assert {e: state for e, (state, _, _) in endpoint_runs(conn, run).items()} == {
        "districts": "failed", "users": "failed", "sections": "failed"}
    assert "rejected this district's token" in str(outcomes["users"])


@pytest.mark.parametrize("api_version", ["v3.0", "v3.1"])
def test_sso_users_pass_the_sso_suite_and_would_break_the_secure_sync_one(
        conn, warehouse_url, sso_simulator, sso_dir, tmp_path, api_version):
    """No school, SIS ID or email is required of an sso district's users; the same records
    in a Secure Sync run are quarantined (and so many that the run stops)."""
    users = load_records(sso_dir, api_version, "users")
    run, _, status = sync(conn, sso_simulator, "sso", ["districts", "users"], api_version)
    assert status == "completed"
    summary = validate_run(warehouse_url, run.sync_run_id, docs_dir=tmp_path / "sso-docs")
    assert summary["quarantined"] == {} and summary["failed_rules"] == {} and summary["warnings"] == {}
    assert summary["records_checked"]["users"] == len(users)
    suites = {r[0] for r in conn.execute("SELECT DISTINCT description FROM clever_landing.validation_results "
                                         "WHERE sync_run_id = %s AND endpoint = 'users'", (run.sync_run_id,))}
    assert "optional field email (x-nullable) is a JSON string when present" in suites
    assert not any("school" in rule and "refers to" in rule for rule in suites)

    secure_sync, _, _ = sync(conn, sso_simulator, "secure_sync", ["districts", "users"], api_version)
    with pytest.raises(ValidationFailed, match=r"users: \d+ of \d+ records quarantined"):
        validate_run(warehouse_url, secure_sync.sync_run_id, docs_dir=tmp_path / "secure-sync-docs")
    rules = {r[0] for r in conn.execute("SELECT DISTINCT rule FROM clever_landing.quarantine WHERE sync_run_id = %s",
                                        (secure_sync.sync_run_id,))}
    assert "guaranteed field roles.student.school is present, not null and a JSON string" in rules


def test_an_sso_user_missing_a_guaranteed_field_is_quarantined(conn, warehouse_url, sso_simulator, sso_dir, tmp_path):
    from tests.helpers import write_records

    users = load_records(sso_dir, "v3.0", "users")
    broken = users[3]["id"]
    del users[3]["roles"]
    write_records(sso_dir, "v3.0", "users", users)
    run, _, _ = sync(conn, sso_simulator, "sso", ["districts", "users"])
    summary = validate_run(warehouse_url, run.sync_run_id, docs_dir=tmp_path / "docs")
    assert summary["quarantined"] == {"users": 1}
    assert conn.execute("SELECT clever_id, rule FROM clever_landing.quarantine WHERE sync_run_id = %s",
                        (run.sync_run_id,)).fetchall() == [
        (broken, "guaranteed field roles is present, not null and a JSON object")]


def test_a_warehouse_from_before_integrations_is_brought_up_to_date(conn):
    """Its runs become secure_sync runs, and endpoint_runs accepts out_of_scope."""
    conn.execute("ALTER TABLE clever_landing.sync_runs DROP COLUMN integration")
    conn.execute("ALTER TABLE clever_landing.district_settings DROP COLUMN integration")
    conn.execute("ALTER TABLE clever_landing.endpoint_runs DROP CONSTRAINT endpoint_runs_status_check, ADD CONSTRAINT "
                 "endpoint_runs_status_check CHECK (status IN ('started', 'completed', 'failed'))")
    old = conn.execute("INSERT INTO clever_landing.sync_runs (district_slug, api_version, endpoints) "
                       "VALUES ('old', 'v3.0', '{users}') RETURNING sync_run_id").fetchone()[0]
    ensure_landing_schema(conn)
    ensure_landing_schema(conn)  # and again: a no-op
    assert conn.execute("SELECT integration FROM clever_landing.sync_runs WHERE sync_run_id = %s",
                        (old,)).fetchone() == ("secure_sync",)
    conn.execute("INSERT INTO clever_landing.endpoint_runs (sync_run_id, endpoint, status) "
                 "VALUES (%s, 'sections', 'out_of_scope')", (old,))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO clever_landing.endpoint_runs (sync_run_id, endpoint, status) "
                     "VALUES (%s, 'terms', 'skipped')", (old,))
    assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'clever_landing' "
                        "AND table_name = 'district_settings' AND column_name = 'integration'").fetchone() == (1,)
