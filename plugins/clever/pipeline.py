"""The work of three steps of a district's sync run, independent of Airflow: extract
(every endpoint, several at a time, then the run's extraction is closed), approve (the
mass-archive guard, then the snapshots point at the run's extraction) and build (the
district's dbt build). clever.steps runs them; run tracking is clever.runs'. Nothing
reaches the snapshots unless ``approve`` ran, and ``approve`` refuses a run whose
extraction is not complete.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures import wait as wait_for
from dataclasses import asdict
from typing import Any

import psycopg
from psycopg import sql

from clever import runs
from clever.catalog import DATA_TYPE
from clever.client import CleverAuthError, CleverClient, CleverScopeError
from clever.config import DistrictConfig
from clever.connections import WarehouseTarget
from clever.extract import ExtractionError, extract_endpoint
from clever.runs import RunNotComplete, close_extraction, completed_endpoints, get_sync_run, pruned_endpoints
from clever.warehouse import ensure_landing_schema

log = logging.getLogger(__name__)

# How long a stopped extraction waits for its threads to notice (their next read or wait).
STOP_WAIT_SECONDS = 5.0


class StaleRun(RuntimeError):
    """A newer run of the district is already approved; approving an older one would
    roll the district back (archive what the newer run added)."""


def extract(conninfo: str, district: DistrictConfig, sync_run_id: int, endpoint: str,
            base_url: str, token: str, stop: threading.Event | None = None) -> dict[str, Any]:
    with psycopg.connect(conninfo, autocommit=True) as conn, CleverClient(
        base_url, token, district=district.slug, api_version=district.api_version, page_size=district.page_size,
        max_attempts=district.http_max_attempts, backoff_max=district.http_backoff_max_seconds,
        page_timeout=district.http_page_timeout_seconds, stop=stop,
    ) as client:
        result = extract_endpoint(conn, client, get_sync_run(conn, sync_run_id), endpoint, stop)
    return asdict(result)


def extract_run(conninfo: str, district: DistrictConfig, sync_run_id: int, base_url: str,
                token: str) -> dict[str, Any]:
    """Extract every endpoint the run asked for that has not completed yet, up to
    ``district.extract_concurrency`` at a time (each endpoint streams through its own
    HTTP session and warehouse connection), then close the extraction. A retry re-reads
    only the endpoints still missing. If any endpoint failed, raise ExtractionError naming
    each (after the others finished), leaving the run open: the DAG's summary closes it."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        run = get_sync_run(conn, sync_run_id)
        done = completed_endpoints(conn, sync_run_id)
    todo = [endpoint for endpoint in run.endpoints if endpoint not in done]
    if done:
        log.info("district %s, run %d: %s already extracted; extracting %s", district.slug, sync_run_id,
                 ", ".join(sorted(done)), ", ".join(todo) or "nothing")
    results: dict[str, Any] = {}
    failures: dict[str, BaseException] = {}
    if todo:
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=min(len(todo), district.extract_concurrency),
                                  thread_name_prefix=f"extract-{district.slug}")
        futures = {pool.submit(extract, conninfo, district, sync_run_id, endpoint, base_url, token, stop): endpoint
                   for endpoint in todo}
        try:
            for future in as_completed(futures):
                try:
                    results[futures[future]] = future.result()
                except Exception as exc:  # every endpoint is tried; each failure is named below
                    failures[futures[future]] = exc
        except BaseException:
            # The task's time limit or SIGTERM: the threads stop at their next read or
            # retry wait. A read that never returns (a silent server) is not waited for
            # beyond a few seconds; its thread ends at its read timeout, landing nothing.
            stop.set()
            wait_for(futures, timeout=STOP_WAIT_SECONDS)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    if failures:
        error = ExtractionError(
            f"district {district.slug!r}, sync run {sync_run_id}: {len(failures)} of {len(run.endpoints)} "
            "endpoint(s) failed: " + "; ".join(f"{e}: {failures[e]}" for e in sorted(failures)))
        error.causes = failures  # type: ignore[attr-defined]
        raise error from next(iter(failures.values()))
    close_extraction(conninfo, sync_run_id)
    return {"extracted": results, "already_extracted": sorted(done)}


def _auth_refusals(error: BaseException) -> list[CleverAuthError]:
    """The 401/403s behind an extraction's failure (each failed endpoint's cause, or the
    error itself for a single request)."""
    causes = list(getattr(error, "causes", {}).values()) or [error, error.__cause__]
    found = [c if isinstance(c, CleverAuthError) else getattr(c, "__cause__", None) for c in causes]
    return [c for c in found if isinstance(c, CleverAuthError)]


def retrying_cannot_fix(error: BaseException) -> bool:
    """Whether an extraction failed for a reason another attempt cannot change (a token
    Clever rejects, or an endpoint outside its scope)."""
    return bool(_auth_refusals(error))


def token_rejected(error: BaseException) -> bool:
    """Whether Clever refused the district's token itself (401, or a 403 that is not a scope
    refusal): what counts toward disconnecting the district (clever.registry)."""
    return any(not isinstance(c, CleverScopeError) for c in _auth_refusals(error))


def approve(conninfo: str, sync_run_id: int, *, threshold: float, floor: int,
            allow_mass_archive: bool = False, lock_timeout_seconds: int = 3600,
            change_threshold: float = 0.75) -> list[str]:
    """Point the snapshots at this run's extraction, endpoint by endpoint, atomically,
    after the mass-archive guard allowed it. Holds the district's build lock, so no build
    of the district is running while the guard counts and the approval lands (other
    districts build meanwhile)."""
    from clever import guard
    from clever.dbt_runner import district_lock

    with psycopg.connect(conninfo, autocommit=True) as conn:
        run = conn.execute("SELECT district_slug, status FROM clever_landing.sync_runs WHERE sync_run_id = %s",
                           (sync_run_id,)).fetchone()
    if run is None or run[1] != "completed":
        raise RunNotComplete(f"sync run {sync_run_id} is not a completed extraction; refusing to approve it")
    district_slug = run[0]
    with district_lock(conninfo, [district_slug], timeout_seconds=lock_timeout_seconds), \
            psycopg.connect(conninfo, autocommit=True) as conn:
        pruned = pruned_endpoints(conn, sync_run_id)
        if pruned:
            raise RunNotComplete(f"district {district_slug!r}: sync run {sync_run_id} no longer holds its "
                                 f"extraction of {', '.join(pruned)} (landing retention pruned it); refusing to "
                                 "approve it. Trigger a new run instead.")
        endpoints = completed_endpoints(conn, sync_run_id)
        waits = guard.archive_wait_reason(conn, district_slug, sync_run_id)
        checks = guard.enforce(conn, district_slug, sync_run_id, endpoints, threshold, floor, allow_mass_archive,
                               change_threshold, archive_waits=waits is not None)
        for check in checks:
            log.info("district %s, run %d, guard: %s%s", district_slug, sync_run_id, check.describe(),
                     " (allowed by allow_mass_archive)" if check.tripped else "")
        # While Clever pauses the district, a type that would archive anything keeps its
        # last approved extraction: it is archived at the first sync after the pause.
        deferred = {DATA_TYPE[c.data_type].endpoint for c in checks if c.deferred}
        if deferred:
            log.warning("district %s, run %d: %s; not applied now (they would archive records): %s. They apply at "
                        "the first sync after it.", district_slug, sync_run_id, waits, ", ".join(sorted(deferred)))
        with conn.transaction():
            status = conn.execute("SELECT status FROM clever_landing.sync_runs WHERE sync_run_id = %s FOR UPDATE",
                                  (sync_run_id,)).fetchone()[0]
            if status != "completed":  # failed by another step meanwhile
                raise RunNotComplete(f"sync run {sync_run_id} is {status}; refusing to approve it")
            newer = conn.execute(
                """SELECT a.endpoint, max(a.sync_run_id) FROM clever_landing.approved_extractions AS a
                   JOIN clever_landing.endpoint_runs AS e ON e.endpoint = a.endpoint AND e.sync_run_id = %s
                   WHERE a.district_slug = %s AND a.sync_run_id > %s AND e.status = 'completed'
                   GROUP BY a.endpoint ORDER BY a.endpoint""",
                (sync_run_id, district_slug, sync_run_id)).fetchall()
            if newer:
                raise StaleRun(
                    f"district {district_slug!r}: sync run {sync_run_id} is older than the approved extraction of "
                    + ", ".join(f"{endpoint} (run {run})" for endpoint, run in newer)
                    + "; approving it would roll the district back. Trigger a new run instead.")
            # synced_at: when the endpoint's extraction began; for an events run, its read of the events
            rows = conn.execute(
                """INSERT INTO clever_landing.approved_extractions (district_slug, endpoint, sync_run_id, synced_at)
                   SELECT %s, e.endpoint, e.sync_run_id, coalesce(ev.started_at, e.started_at)
                   FROM clever_landing.endpoint_runs AS e
                   JOIN clever_landing.sync_runs AS r ON r.sync_run_id = e.sync_run_id
                   LEFT JOIN clever_landing.endpoint_runs AS ev ON ev.sync_run_id = e.sync_run_id
                                                                AND ev.endpoint = 'events' AND r.mode = 'events'
                   WHERE e.sync_run_id = %s AND e.status = 'completed' AND e.endpoint <> 'events'
                     AND NOT e.endpoint = ANY(%s)
                   ON CONFLICT DO NOTHING
                   RETURNING endpoint""",
                (district_slug, sync_run_id, sorted(deferred)),
            ).fetchall()
            approved = sorted(r[0] for r in rows)
            record_applied_changes(conn, district_slug, sync_run_id, approved)
        analyze_if_stale(conn, "applied_changes")
    log.info("district %s: run %d approved for snapshots: %s", district_slug, sync_run_id, ", ".join(approved))
    return approved


def analyze_if_stale(conn: psycopg.Connection, table: str) -> None:
    """ANALYZE a landing table the build is about to read by key, when it was never
    analyzed or a tenth of it changed since. The events build looks each changed key up in
    applied_changes: planned on no statistics (a table that was empty, filled by this
    approval, before autovacuum came by), PostgreSQL scanned the whole table once per key,
    331 s for 48,066 sections at a million students instead of 4 s."""
    stale = conn.execute(
        """SELECT coalesce(last_analyze, last_autoanalyze) IS NULL
                  OR n_mod_since_analyze > greatest(1000, 0.1 * n_live_tup)
             FROM pg_stat_user_tables WHERE schemaname = 'clever_landing' AND relname = %s""", (table,)).fetchone()
    if stale and stale[0]:
        try:  # the approval has committed: statistics help the build, their failure must not fail the run
            conn.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier("clever_landing"), sql.Identifier(table)))
        except psycopg.Error as exc:
            log.warning("ANALYZE clever_landing.%s failed (%s); autovacuum will analyze it", table, exc)


def record_applied_changes(conn: psycopg.Connection, district_slug: str, sync_run_id: int,
                           approved: list[str]) -> None:
    """In the approval's transaction: an events run's changes go over the district's full
    extraction (a quarantined change is not applied: the record keeps its last clean
    version); a full sync's approval starts over from its own extraction."""
    if runs.run_mode(conn, sync_run_id) != "events":
        conn.execute("DELETE FROM clever_landing.applied_changes WHERE district_slug = %s AND endpoint = ANY(%s)",
                     (district_slug, approved))
        return
    conn.execute(
        """INSERT INTO clever_landing.applied_changes AS a
               (district_slug, endpoint, clever_id, sync_run_id, deleted, synced_at)
           SELECT %(district)s, c.endpoint, c.clever_id, c.sync_run_id, c.action = 'deleted', x.synced_at
           FROM clever_landing.event_changes AS c
           JOIN clever_landing.approved_extractions AS x
             ON x.sync_run_id = c.sync_run_id AND x.endpoint = c.endpoint AND x.district_slug = %(district)s
           WHERE c.sync_run_id = %(run)s AND c.endpoint = ANY(%(approved)s)
             AND NOT EXISTS (SELECT 1 FROM clever_landing.quarantine AS q
                             WHERE q.sync_run_id = c.sync_run_id AND q.endpoint = c.endpoint
                               AND q.clever_id = c.clever_id)
           ON CONFLICT (district_slug, endpoint, clever_id) DO UPDATE
           SET sync_run_id = EXCLUDED.sync_run_id, deleted = EXCLUDED.deleted, synced_at = EXCLUDED.synced_at""",
        {"district": district_slug, "run": sync_run_id, "approved": approved})


def build(target: WarehouseTarget, district: DistrictConfig, full_refresh: bool = False,
          lock_timeout_seconds: int = 3600, complete: bool = True) -> dict[str, Any]:
    """The district's dbt build (its snapshots, its rows of every table, its data tests),
    after writing its matching settings; other districts build side by side. Deploys the
    dbt project first if the warehouse was built with another version of it. Not
    ``complete``: an events run's build, without the data tests and the rollover report."""
    from clever.dbt_runner import DISTRICT_BUILD_SELECTOR, EVENTS_BUILD_SELECTOR, build_districts
    from clever.matching import write_match_settings

    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        ensure_landing_schema(conn)
        write_match_settings(conn, district)
    outcome = build_districts(target, [district.slug], full_refresh=full_refresh,
                              lock_timeout_seconds=lock_timeout_seconds,
                              selector=DISTRICT_BUILD_SELECTOR if complete else EVENTS_BUILD_SELECTOR)
    for unique_id, message in outcome.warnings.items():
        log.warning("district %s: dbt test %s warned: %s", district.slug, unique_id, message)
    return {"started_at": outcome.started_at_epoch, "seconds": round(outcome.seconds, 1),
            "nodes": len(outcome.statuses), "complete": complete,
            "warnings": {unique_id.split(".", 2)[-1]: message for unique_id, message in outcome.warnings.items()}}


