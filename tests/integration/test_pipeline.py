"""Pipeline steps that guard what reaches the snapshots."""

from __future__ import annotations

import psycopg
import pytest

from clever import pipeline
from clever.dbt_runner import _BUILD_LOCK_KEY, BuildLockTimeout, build_lock
from clever.warehouse import ensure_landing_schema, start_sync_run


@pytest.fixture
def conn(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as connection:
        ensure_landing_schema(connection)
        yield connection


def test_approve_refuses_a_run_that_is_not_completed(conn, warehouse_url):
    run = start_sync_run(conn, "demo", "v3.0", ["districts"])
    with pytest.raises(pipeline.RunNotComplete):
        pipeline.approve(warehouse_url, run.sync_run_id, threshold=0.2, floor=10)
    with pytest.raises(pipeline.RunNotComplete, match="not complete"):
        pipeline.close_extraction(warehouse_url, run.sync_run_id)
    assert conn.execute("SELECT count(*) FROM clever_landing.approved_extractions").fetchone() == (0,)


def test_a_failed_step_fails_the_run_so_it_can_never_be_approved(conn, warehouse_url):
    run = start_sync_run(conn, "demo", "v3.0", [])
    assert pipeline.close_extraction(warehouse_url, run.sync_run_id) == "completed"
    pipeline.fail_run(warehouse_url, run.sync_run_id, "validate", RuntimeError("2 records without an id"))
    status, error = conn.execute("SELECT status, error FROM clever_landing.sync_runs").fetchone()
    assert status == "failed" and error == "validate: 2 records without an id"
    with pytest.raises(pipeline.RunNotComplete):
        pipeline.approve(warehouse_url, run.sync_run_id, threshold=0.2, floor=10)


def test_build_lock_waits_then_gives_up_with_a_clear_message(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as other_build:
        other_build.execute("SELECT pg_advisory_lock(%s)", (_BUILD_LOCK_KEY,))
        with pytest.raises(BuildLockTimeout, match="re-run this DAG"), build_lock(warehouse_url, timeout_seconds=1):
            pass
        other_build.execute("SELECT pg_advisory_unlock(%s)", (_BUILD_LOCK_KEY,))
    with build_lock(warehouse_url, timeout_seconds=1):
        pass


def test_approval_never_lands_while_a_build_is_running(conn, warehouse_url):
    run = start_sync_run(conn, "demo", "v3.0", [])
    assert pipeline.close_extraction(warehouse_url, run.sync_run_id) == "completed"
    with psycopg.connect(warehouse_url, autocommit=True) as running_build:
        running_build.execute("SELECT pg_advisory_lock(%s)", (_BUILD_LOCK_KEY,))
        with pytest.raises(BuildLockTimeout):
            pipeline.approve(warehouse_url, run.sync_run_id, threshold=0.2, floor=10, lock_timeout_seconds=1)
        running_build.execute("SELECT pg_advisory_unlock(%s)", (_BUILD_LOCK_KEY,))
    assert conn.execute("SELECT count(*) FROM clever_landing.guard_checks").fetchone() == (0,)
    pipeline.approve(warehouse_url, run.sync_run_id, threshold=0.2, floor=10, lock_timeout_seconds=1)


def test_an_older_run_is_never_approved_after_a_newer_one(conn, warehouse_url):
    older = start_sync_run(conn, "demo", "v3.0", [])
    newer = start_sync_run(conn, "demo", "v3.0", [])
    for run in (older, newer):
        conn.execute("INSERT INTO clever_landing.endpoint_runs (sync_run_id, endpoint, status) "
                     "VALUES (%s, 'users', 'completed')", (run.sync_run_id,))
        assert pipeline.close_extraction(warehouse_url, run.sync_run_id) == "completed"
    other = start_sync_run(conn, "other", "v3.0", [])  # other districts' runs do not count
    conn.execute("INSERT INTO clever_landing.endpoint_runs (sync_run_id, endpoint, status) "
                 "VALUES (%s, 'users', 'completed')", (other.sync_run_id,))
    pipeline.close_extraction(warehouse_url, other.sync_run_id)
    pipeline.approve(warehouse_url, other.sync_run_id, threshold=0.2, floor=10)
    assert pipeline.approve(warehouse_url, newer.sync_run_id, threshold=0.2, floor=10) == ["users"]
    stale = rf"older than the approved extraction of users \(run {newer.sync_run_id}\)"
    with pytest.raises(pipeline.StaleRun, match=stale):
        pipeline.approve(warehouse_url, older.sync_run_id, threshold=0.2, floor=10)
    assert conn.execute("SELECT sync_run_id FROM clever_landing.approved_extractions WHERE district_slug = 'demo'"
                        ).fetchall() == [(newer.sync_run_id,)]
