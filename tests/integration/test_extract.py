"""Extraction into real PostgreSQL landing tables from the real simulator."""

from __future__ import annotations

import psycopg
import pytest

from clever.catalog import CORE_ENDPOINTS
from clever.client import CleverClient
from clever.extract import BadRecordError, ExtractionError, extract_endpoint
from clever.runs import completed_endpoints, finish_sync_run, start_sync_run
from clever.warehouse import ensure_landing_schema
from tests.conftest import DEMO_TOKEN
from tests.helpers import load_records, write_records


@pytest.fixture
def conn(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as connection:
        ensure_landing_schema(connection)
        yield connection


def client_for(simulator, api_version="v3.0", **kw):
    kw.setdefault("backoff_initial", 0.01)
    kw.setdefault("backoff_max", 0.05)
    return CleverClient(simulator.base_url, DEMO_TOKEN, district="demo", api_version=api_version, **kw)


def run_sync(conn, client, endpoints=CORE_ENDPOINTS):
    run = start_sync_run(conn, "demo", client.api_version, endpoints)
    for endpoint in endpoints:
        extract_endpoint(conn, client, run, endpoint)
    return run, finish_sync_run(conn, run.sync_run_id)


def landed(conn, endpoint, sync_run_id):
    return conn.execute(
        f"SELECT clever_id, raw, district_id, api_version, is_partial FROM clever_landing.{endpoint} "
        "WHERE sync_run_id = %s ORDER BY clever_id", (sync_run_id,)).fetchall()


@pytest.mark.parametrize("api_version", ["v3.0", "v3.1"])
def test_sample_district_lands_exactly_what_clever_serves(conn, simulator, district_dir, api_version):
    run, status = run_sync(conn, client_for(simulator, api_version, page_size=9))
    assert status == "completed"
    district_id = load_records(district_dir, api_version, "districts")[0]["id"]
    for endpoint in CORE_ENDPOINTS:
        expected = load_records(district_dir, api_version, endpoint)
        rows = landed(conn, endpoint, run.sync_run_id)
        assert len(rows) == len(expected) > 0, endpoint
        assert [r[0] for r in rows] == [e["id"] for e in expected]
        assert [r[1] for r in rows] == expected, f"{endpoint}: landed JSON differs from what Clever served"
        assert {r[2] for r in rows} == {district_id}
        assert {r[3] for r in rows} == {api_version}
        assert not any(r[4] for r in rows)
        counts = conn.execute(
            "SELECT status, row_count, page_count FROM clever_landing.endpoint_runs "
            "WHERE sync_run_id = %s AND endpoint = %s", (run.sync_run_id, endpoint)).fetchone()
        assert counts == ("completed", len(expected), -(-len(expected) // 9))


def test_failure_mid_endpoint_leaves_run_incomplete_and_earlier_runs_intact(conn, simulator, district_dir):
    client = client_for(simulator, page_size=5, max_attempts=2)
    first, status = run_sync(conn, client)
    assert status == "completed"
    before = {e: landed(conn, e, first.sync_run_id) for e in CORE_ENDPOINTS}

    simulator.set_faults(fail_endpoint="users", fail_after_pages=2)
    second = start_sync_run(conn, "demo", "v3.0", CORE_ENDPOINTS)
    for endpoint in ("districts", "schools"):
        extract_endpoint(conn, client, second, endpoint)
    with pytest.raises(ExtractionError) as info:
        extract_endpoint(conn, client, second, "users")
    assert "'demo'" in str(info.value) and "'users'" in str(info.value)
    assert finish_sync_run(conn, second.sync_run_id) == "failed"

    users = landed(conn, "users", second.sync_run_id)
    assert len(users) == 10, "the two pages before the failure stay, for diagnosis"
    assert all(row[4] for row in users), "partial rows are flagged"
    assert completed_endpoints(conn, second.sync_run_id) == {"districts", "schools"}
    run_row = conn.execute("SELECT status, error FROM clever_landing.sync_runs WHERE sync_run_id = %s",
                           (second.sync_run_id,)).fetchone()
    assert run_row[0] == "failed" and "users" in run_row[1]
    endpoint_error = conn.execute(
        "SELECT status, error FROM clever_landing.endpoint_runs WHERE sync_run_id = %s AND endpoint = 'users'",
        (second.sync_run_id,)).fetchone()
    assert endpoint_error[0] == "failed" and "users" in endpoint_error[1]

    assert {e: landed(conn, e, first.sync_run_id) for e in CORE_ENDPOINTS} == before
    assert conn.execute("SELECT status FROM clever_landing.sync_runs WHERE sync_run_id = %s",
                        (first.sync_run_id,)).fetchone() == ("completed",)


def test_retrying_an_endpoint_in_the_same_run_does_not_duplicate(conn, simulator, district_dir):
    client = client_for(simulator, page_size=4)
    run = start_sync_run(conn, "demo", "v3.0", ["schools"])
    extract_endpoint(conn, client, run, "schools")
    extract_endpoint(conn, client, run, "schools")
    assert len(landed(conn, "schools", run.sync_run_id)) == len(load_records(district_dir, "v3.0", "schools"))


def test_run_missing_an_endpoint_is_not_completed(conn, simulator):
    run = start_sync_run(conn, "demo", "v3.0", ["districts", "schools"])
    extract_endpoint(conn, client_for(simulator), run, "districts")
    assert finish_sync_run(conn, run.sync_run_id) == "failed"


HOSTILE_STRINGS = [
    "O'Brien", 'say "hi"', "back\\slash", "\\N", "\\.", "tab\there", "new\nline", "cr\rreturn",
    "Robert'); DROP TABLE clever_landing.users;--", "$$ dollar $$", "%s %(name)s {0}", "' OR 1=1 --",
    "José Zoë Ñuñez", "李小龙", "Алексей", "محمد", "김민준", "Ελένη", "👩🏽‍🏫📚", "e\u0301 combining",
    "\u200bzero\u200dwidth\ufeff", "\u202eRTL override", "x" * 100_000, "<script>alert(1)</script>",
]


def test_unicode_and_hostile_strings_land_byte_for_byte(conn, simulator, district_dir):
    schools = load_records(district_dir, "v3.0", "schools")
    for i, text in enumerate(HOSTILE_STRINGS):
        schools[i % len(schools)].setdefault("hostile", []).append(text)
    schools[0]["name"] = HOSTILE_STRINGS[8]
    write_records(district_dir, "v3.0", "schools", schools)

    run = start_sync_run(conn, "demo", "v3.0", ["schools"])
    extract_endpoint(conn, client_for(simulator, page_size=2), run, "schools")
    rows = landed(conn, "schools", run.sync_run_id)
    assert [r[1] for r in rows] == schools
    stored = conn.execute(
        "SELECT jsonb_array_elements_text(raw->'hostile') FROM clever_landing.schools "
        "WHERE sync_run_id = %s ORDER BY clever_id", (run.sync_run_id,)).fetchall()
    assert sorted(s[0] for s in stored) == sorted(HOSTILE_STRINGS)
    assert conn.execute("SELECT count(*) FROM clever_landing.users").fetchone() == (0,)  # table still there


def test_text_that_only_looks_like_an_escaped_nul_lands_byte_for_byte(conn, simulator, district_dir):
    # Literal backslashes before "u0000" (what a JSON escape of NUL looks like) are data.
    literal = ["C:\\u0000\\dir", "\\\\u0000", "a\\\\\\\\u0000b", "\\u00000"]
    terms = load_records(district_dir, "v3.0", "terms")
    for term, text in zip(terms, literal, strict=False):
        term["name"] = text
    terms[-1]["ext"] = {"note\\u0000key": literal[0]}
    write_records(district_dir, "v3.0", "terms", terms)
    run = start_sync_run(conn, "demo", "v3.0", ["terms"])
    extract_endpoint(conn, client_for(simulator), run, "terms")
    assert [r[1] for r in landed(conn, "terms", run.sync_run_id)] == terms
    names = conn.execute("SELECT raw ->> 'name' FROM clever_landing.terms WHERE sync_run_id = %s ORDER BY clever_id",
                         (run.sync_run_id,)).fetchall()
    assert [n[0] for n in names][: len(literal)] == literal


@pytest.mark.parametrize("where", ["value", "after_escaped_backslash", "key", "surrogate", "surrogate_key"])
def test_record_that_cannot_be_stored_names_the_record(conn, simulator, district_dir, where):
    terms = load_records(district_dir, "v3.0", "terms")
    if where == "value":
        terms[-1]["name"] = "nul\u0000byte"
    elif where == "after_escaped_backslash":  # backslash, then a real NUL
        terms[-1]["name"] = "back\\\u0000slash"
    elif where == "key":
        terms[-1]["ext"] = {"k\u0000": "v"}
    elif where == "surrogate":  # Clever's JSON could carry the escape "\ud800" alone
        terms[-1]["name"] = "lone \ud800 surrogate"
    else:
        terms[-1]["ext"] = {"k\udfff": "v"}
    write_records(district_dir, "v3.0", "terms", terms)
    run = start_sync_run(conn, "demo", "v3.0", ["terms"])
    with pytest.raises(ExtractionError, match=terms[-1]["id"]) as info:
        extract_endpoint(conn, client_for(simulator), run, "terms")
    assert isinstance(info.value.__cause__, BadRecordError)
    assert "'terms'" in str(info.value) and "(page 1, item " in str(info.value)
    assert ("surrogate" in str(info.value)) == where.startswith("surrogate")
    assert completed_endpoints(conn, run.sync_run_id) == set()

