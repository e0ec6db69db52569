"""Landing retention (clever.retention) on a real warehouse: the rows the warehouse still
reads are kept whatever their age, everything else of older runs is deleted, and syncs
after a prune validate, snapshot and restore as before."""

from __future__ import annotations

import functools

import psycopg
import pytest

from clever import pipeline, runs
from clever.catalog import CORE_ENDPOINTS
from clever.config import get_district
from clever.retention import prune_landing
from clever.validation import ValidationFailed, find_baseline, validate_run
from tests.conftest import DEMO_TOKEN
from tests.helpers import land_and_build, load_records, write_records

STAGING_VIEWS = [f"stg_clever__{e}" for e in CORE_ENDPOINTS] + ["stg_clever__section_enrollments"]


def landed(url: str) -> dict[tuple[str, int], int]:
    """Landing rows per (endpoint, run)."""
    with psycopg.connect(url) as conn:
        return {(endpoint, run): n for endpoint in CORE_ENDPOINTS for run, n in conn.execute(
            f"SELECT sync_run_id, count(*) FROM clever_landing.{endpoint} GROUP BY sync_run_id")}


def staged(url: str) -> dict[str, list[str]]:
    """Every row of every staging view."""
    with psycopg.connect(url) as conn:
        return {view: sorted(row[0] for row in conn.execute(f"SELECT to_jsonb(v)::text FROM clever_staging.{view} v"))
                for view in STAGING_VIEWS}


def another_districts_run(url: str, copy_of: int) -> int:
    """An old, unapproved run of district 'other' holding a copy of run ``copy_of``'s users."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        run = conn.execute("INSERT INTO clever_landing.sync_runs (district_slug, api_version, status, endpoints) "
                           "VALUES ('other', 'v3.0', 'failed', '{users}') RETURNING sync_run_id").fetchone()[0]
        rows = conn.execute("INSERT INTO clever_landing.users (sync_run_id, district_id, clever_id, api_version, raw, "
                            "extracted_at) SELECT %s, district_id, clever_id, api_version, raw, extracted_at "
                            "FROM clever_landing.users WHERE sync_run_id = %s", (run, copy_of)).rowcount
        conn.execute("INSERT INTO clever_landing.endpoint_runs (sync_run_id, endpoint, status, row_count) "
                     "VALUES (%s, 'users', 'failed', %s)", (run, rows))
    return run


def test_pruning_keeps_what_the_warehouse_reads_and_deletes_the_rest(warehouse_url, simulator, district_dir,
                                                                      tmp_path):
    url, district = warehouse_url, get_district("demo")
    sync = functools.partial(land_and_build, url, district, simulator.base_url, DEMO_TOKEN, validate=True,
                             docs_dir=tmp_path / "docs")
    users = load_records(district_dir, "v3.0", "users")
    size = {e: len(load_records(district_dir, "v3.0", e)) for e in CORE_ENDPOINTS}
    nameless = next(u for u in users if "student" in u["roles"])
    name = nameless.pop("name")

    first = sync()  # all clean
    write_records(district_dir, "v3.0", "users", users)
    second = sync()  # the nameless student is quarantined: its version of run 1 stands in for it
    third = sync(endpoints=["users"])  # still quarantined; users are validated against run 2's schools
    fourth = sync(endpoints=["schools"])  # schools are now run 4's; run 3's users still refer to run 2's
    assert (first, second, third, fourth) == (1, 2, 3, 4)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT endpoint, sync_run_id FROM clever_staging.stg_clever__carried_records"
                            ).fetchall() == [("users", first)]
        assert conn.execute("SELECT reference_runs ->> 'schools' FROM clever_landing.validated_extractions "
                            "WHERE sync_run_id = %s AND endpoint = 'users'", (third,)).fetchone() == (str(second),)

    other = another_districts_run(url, copy_of=first)
    assert prune_landing(url, "demo", None) == [], "retention off"
    assert prune_landing(url, "demo", 1) == [], "every run is younger than a day"
    rows_before, staging_before = landed(url), staged(url)
    pruned = {(p.endpoint, p.sync_run_id): p.rows for p in prune_landing(url, "demo", 0)}
    assert landed(url)[("users", other)] == size["users"], "another district's runs are its own business"
    assert [(p.endpoint, p.sync_run_id) for p in prune_landing(url, "other", 0)] == [("users", other)]
    del rows_before[("users", other)]

    assert pruned == {("users", first): size["users"] - 1, ("schools", first): size["schools"]} | {
        (e, first): size[e] for e in ("districts", "sections", "terms", "courses")}
    kept = {("users", first): 1,  # the stand-in
            ("users", second): size["users"],  # the current sections (run 2) were validated against them
            ("users", third): size["users"],  # current
            ("schools", second): size["schools"],  # the current users (run 3) were validated against them
            ("schools", fourth): size["schools"]} | {  # current
        (e, second): size[e] for e in ("districts", "sections", "terms", "courses")}
    assert landed(url) == kept
    assert {key: rows_before[key] - kept.get(key, 0) for key in rows_before if rows_before[key] != kept.get(key)
            } == pruned
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT clever_id FROM clever_landing.users WHERE sync_run_id = %s",
                            (first,)).fetchall() == [(nameless["id"],)]
        marked = {(e, r): n for e, r, n in conn.execute(
            "SELECT endpoint, sync_run_id, pruned_rows FROM clever_landing.endpoint_runs WHERE pruned_at IS NOT NULL")}
        assert marked == pruned | {("users", other): size["users"]}
    assert staged(url) == staging_before, "the warehouse reads exactly what it read before"
    assert prune_landing(url, "demo", 0) == [], "nothing more to delete"

    # A baseline that was pruned is no baseline: what has gone since it could not be told.
    with psycopg.connect(url, autocommit=True) as conn:
        fingerprint = conn.execute("SELECT suite_fingerprint FROM clever_landing.validated_extractions "
                                   "WHERE sync_run_id = %s AND endpoint = 'users'", (third,)).fetchone()[0]
        later = 10**9  # a run after all of these
        assert find_baseline(conn, "demo", "users", later, fingerprint).sync_run_id == third
        with conn.transaction():  # as if runs 2 and 3 had been validated with another suite
            conn.execute("UPDATE clever_landing.validated_extractions SET suite_fingerprint = 'another suite' "
                         "WHERE endpoint = 'users' AND sync_run_id IN (%s, %s)", (second, third))
            assert find_baseline(conn, "demo", "users", later, fingerprint) is None, "run 1 was pruned"
            conn.execute("UPDATE clever_landing.endpoint_runs SET pruned_at = NULL WHERE sync_run_id = %s", (first,))
            assert find_baseline(conn, "demo", "users", later, fingerprint).sync_run_id == first, "as if not pruned"
            conn.execute("UPDATE clever_landing.endpoint_runs SET pruned_at = now() "
                         "WHERE endpoint = 'schools' AND sync_run_id = %s", (first,))
            assert find_baseline(conn, "demo", "users", later, fingerprint) is None, "its schools were pruned"
            raise psycopg.Rollback()

    # The student is repaired: it is its own version again, and its stand-in goes at the next prune.
    nameless["name"] = name
    write_records(district_dir, "v3.0", "users", users)
    fifth = sync()
    with psycopg.connect(url) as conn:
        checked = dict(conn.execute("SELECT endpoint, records_checked FROM clever_landing.validated_extractions "
                                    "WHERE sync_run_id = %s", (fifth,)).fetchall())
        assert checked["users"] == 1, "validated against the kept baseline: only the repaired record"
        assert conn.execute("SELECT DISTINCT dbt_is_deleted FROM clever_snapshots.snap_clever__users "
                            "WHERE clever_id = %s", (nameless["id"],)).fetchall() == [("False",)]
    prune_landing(url, "demo", 0)
    assert landed(url) == {(e, fifth): size[e] for e in CORE_ENDPOINTS}

    # A run still extracting keeps its rows.
    running = runs.start_run(url, district, ["users"])
    pipeline.extract(url, district, running, "users", simulator.base_url, DEMO_TOKEN)
    assert prune_landing(url, "demo", 0) == []
    assert landed(url)[("users", running)] == size["users"]


def test_a_pruned_run_is_not_validated_or_approved_again_and_nothing_is_pruned_before_a_build(
        warehouse_url, simulator, district_dir, tmp_path):
    url, district = warehouse_url, get_district("demo")
    users = len(load_records(district_dir, "v3.0", "users"))
    run = runs.start_run(url, district, ["users"])
    pipeline.extract(url, district, run, "users", simulator.base_url, DEMO_TOKEN)
    assert runs.close_extraction(url, run) == "completed"
    assert prune_landing(url, "demo", 0) == [], "never built: which rows stand in for others is not known yet"
    assert landed(url) == {("users", run): users}

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE clever_landing.endpoint_runs SET pruned_at = now(), pruned_rows = %s "
                     "WHERE sync_run_id = %s", (users - 1, run))
    with pytest.raises(ValidationFailed, match=f"sync run {run} no longer holds its extraction of users"):
        validate_run(url, run, docs_dir=tmp_path / "docs")
    with pytest.raises(runs.RunNotComplete, match="landing retention pruned it"):
        pipeline.approve(url, run, threshold=district.mass_archive_threshold, floor=district.mass_archive_floor)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM clever_landing.approved_extractions").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM clever_landing.validated_extractions").fetchone() == (0,)
