"""Pipeline steps that guard what reaches the snapshots."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from clever import pipeline, runs
from clever.config import get_district
from clever.dbt_runner import BuildLockTimeout, deploy_lock, district_lock
from clever.runs import start_sync_run
from clever.summary import summarize
from clever.warehouse import ensure_landing_schema


@pytest.fixture
def conn(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as connection:
        ensure_landing_schema(connection)
        yield connection


def test_approve_refuses_a_run_that_is_not_completed(conn, warehouse_url):
    run = start_sync_run(conn, "demo", "v3.0", ["districts"])
    with pytest.raises(runs.RunNotComplete):
        pipeline.approve(warehouse_url, run.sync_run_id, threshold=0.2, floor=10)
    with pytest.raises(runs.RunNotComplete, match="not complete"):
        runs.close_extraction(warehouse_url, run.sync_run_id)
    assert conn.execute("SELECT count(*) FROM clever_landing.approved_extractions").fetchone() == (0,)


def test_a_failed_step_fails_the_run_so_it_can_never_be_approved(conn, warehouse_url):
    run = start_sync_run(conn, "demo", "v3.0", [])
    assert runs.close_extraction(warehouse_url, run.sync_run_id) == "completed"
    runs.fail_run(warehouse_url, run.sync_run_id, "validate", RuntimeError("2 records without an id"))
    status, error = conn.execute("SELECT status, error FROM clever_landing.sync_runs").fetchone()
    assert status == "failed" and error == "validate: 2 records without an id"
    with pytest.raises(runs.RunNotComplete):
        pipeline.approve(warehouse_url, run.sync_run_id, threshold=0.2, floor=10)


def test_a_district_lock_waits_then_gives_up_with_a_clear_message_and_other_districts_go_on(warehouse_url):
    with district_lock(warehouse_url, ["demo"], timeout_seconds=1):
        with pytest.raises(BuildLockTimeout, match=r"district 'demo'.*re-run this DAG"), \
                district_lock(warehouse_url, ["demo"], timeout_seconds=1):
            pass
        with district_lock(warehouse_url, ["other"], timeout_seconds=1):  # another district is not held up
            pass
    with district_lock(warehouse_url, ["demo"], timeout_seconds=1):
        pass


def test_a_deploy_waits_for_district_builds_and_holds_new_ones(warehouse_url):
    with district_lock(warehouse_url, ["demo"], timeout_seconds=1):
        with pytest.raises(BuildLockTimeout, match="deploying the dbt project"), \
                deploy_lock(warehouse_url, timeout_seconds=1):
            pass
    with deploy_lock(warehouse_url, timeout_seconds=1):
        with pytest.raises(BuildLockTimeout, match="deploy build"), \
                district_lock(warehouse_url, ["other"], timeout_seconds=1):
            pass
    with district_lock(warehouse_url, ["demo", "other"], timeout_seconds=1):
        pass


def test_approval_never_lands_while_the_district_builds(conn, warehouse_url):
    run = start_sync_run(conn, "demo", "v3.0", [])
    assert runs.close_extraction(warehouse_url, run.sync_run_id) == "completed"
    with district_lock(warehouse_url, ["demo"], timeout_seconds=1):  # the district's build is running
        with pytest.raises(BuildLockTimeout):
            pipeline.approve(warehouse_url, run.sync_run_id, threshold=0.2, floor=10, lock_timeout_seconds=1)
    assert conn.execute("SELECT count(*) FROM clever_landing.guard_checks").fetchone() == (0,)
    with district_lock(warehouse_url, ["other"], timeout_seconds=1):  # another district's build is no obstacle
        pipeline.approve(warehouse_url, run.sync_run_id, threshold=0.2, floor=10, lock_timeout_seconds=1)


def test_an_older_run_is_never_approved_after_a_newer_one(conn, warehouse_url):
    older = start_sync_run(conn, "demo", "v3.0", [])
    newer = start_sync_run(conn, "demo", "v3.0", [])
    for run in (older, newer):
        conn.execute("INSERT INTO clever_landing.endpoint_runs (sync_run_id, endpoint, status) "
                     "VALUES (%s, 'users', 'completed')", (run.sync_run_id,))
        assert runs.close_extraction(warehouse_url, run.sync_run_id) == "completed"
    other = start_sync_run(conn, "other", "v3.0", [])  # other districts' runs do not count
    conn.execute("INSERT INTO clever_landing.endpoint_runs (sync_run_id, endpoint, status) "
                 "VALUES (%s, 'users', 'completed')", (other.sync_run_id,))
    runs.close_extraction(warehouse_url, other.sync_run_id)
    pipeline.approve(warehouse_url, other.sync_run_id, threshold=0.2, floor=10)
    assert pipeline.approve(warehouse_url, newer.sync_run_id, threshold=0.2, floor=10) == ["users"]
    stale = rf"older than the approved extraction of users \(run {newer.sync_run_id}\)"
    with pytest.raises(pipeline.StaleRun, match=stale):
        pipeline.approve(warehouse_url, older.sync_run_id, threshold=0.2, floor=10)
    assert conn.execute("SELECT sync_run_id FROM clever_landing.approved_extractions WHERE district_slug = 'demo'"
                        ).fetchall() == [(newer.sync_run_id,)]


def _status(conn, run_id: int) -> tuple[str, str | None]:
    return conn.execute("SELECT status, error FROM clever_landing.sync_runs WHERE sync_run_id = %s",
                        (run_id,)).fetchone()


def test_a_run_never_starts_beside_a_working_run_of_its_district(conn, warehouse_url):
    demo = get_district("demo")
    other = dataclasses.replace(demo, slug="other")
    first = runs.start_run(warehouse_url, demo, ["districts"])
    with runs.run_lease(warehouse_url, "demo"):  # a step of the first run is working
        with pytest.raises(runs.RunInProgress, match=rf"district 'demo': sync run {first} is still working"):
            runs.start_run(warehouse_url, demo, ["districts"])
        assert _status(conn, first) == ("started", None), "the working run was left alone"
        runs.start_run(warehouse_url, other, ["districts"])  # another district is not held up
    # No step works any more: the first run was killed, and the next run closes it.
    second = runs.start_run(warehouse_url, demo, ["districts"])
    assert _status(conn, first) == ("failed", "abandoned: the run stopped before finishing")
    # Had it been alive after all (between two tasks), its extraction could not reopen it.
    with pytest.raises(runs.RunNotComplete, match="abandoned"):
        runs.close_extraction(warehouse_url, first)
    assert _status(conn, first)[0] == "failed" and _status(conn, second) == ("started", None)


def test_a_run_killed_after_its_extraction_is_closed_by_the_next(conn, warehouse_url):
    killed = start_sync_run(conn, "demo", "v3.0", []).sync_run_id
    assert runs.close_extraction(warehouse_url, killed) == "completed"  # then killed during the build
    summarized = start_sync_run(conn, "demo", "v3.0", []).sync_run_id
    runs.close_extraction(warehouse_url, summarized)
    summarize(warehouse_url, summarized, None)
    runs.start_run(warehouse_url, get_district("demo"), ["districts"])
    assert _status(conn, killed) == (
        "failed", "abandoned: the run stopped after its extraction, in validate, approve or build")
    assert _status(conn, summarized) == ("completed", None), "a summarized run is left as it ended"


def test_the_events_overlay_is_analyzed_before_a_build_reads_it_by_key(conn):
    """Planned without statistics, the keyed snapshot comparison scanned applied_changes
    once per changed key (docs/PERFORMANCE.md, the million-student events row)."""
    def last_analyzed():
        conn.execute("SELECT pg_stat_force_next_flush()")
        return conn.execute("SELECT last_analyze, n_mod_since_analyze FROM pg_stat_user_tables "
                            "WHERE schemaname = 'clever_landing' AND relname = 'applied_changes'").fetchone()

    conn.execute("INSERT INTO clever_landing.applied_changes (district_slug, endpoint, clever_id, sync_run_id, "
                 "deleted, synced_at) SELECT 'd', 'users', 'u' || i, 1, false, now() FROM generate_series(1, 500) i")
    pipeline.analyze_if_stale(conn, "applied_changes")
    first, _ = last_analyzed()
    assert first is not None, "never analyzed: analyzed now"
    conn.execute("UPDATE clever_landing.applied_changes SET sync_run_id = 2 WHERE clever_id IN ('u1', 'u2')")
    pipeline.analyze_if_stale(conn, "applied_changes")
    assert last_analyzed()[0] == first, "two changed rows of 500: not analyzed again"
    conn.execute("INSERT INTO clever_landing.applied_changes (district_slug, endpoint, clever_id, sync_run_id, "
                 "deleted, synced_at) SELECT 'd', 'users', 'v' || i, 3, false, now() FROM generate_series(1, 1500) i")
    last_analyzed()
    pipeline.analyze_if_stale(conn, "applied_changes")
    again, changed = last_analyzed()
    assert again > first and changed == 0
