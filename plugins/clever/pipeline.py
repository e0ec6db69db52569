"""The steps of one district's sync run, independent of Airflow.

start_run → extract (per endpoint) → close_extraction → validate → approve → build →
summarize. Each step takes the warehouse connection string and the run id, so the DAG
tasks stay thin and every step can be called from tests or a shell. Nothing reaches the
snapshots unless ``approve`` ran, and ``approve`` refuses a run whose extraction is not
complete.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures import wait as wait_for
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from clever.client import CleverAuthError, CleverClient
from clever.config import DistrictConfig
from clever.connections import WarehouseTarget
from clever.extract import ExtractionError, extract_endpoint
from clever.warehouse import (
    completed_endpoints,
    ensure_landing_schema,
    finish_sync_run,
    get_sync_run,
    pruned_endpoints,
    start_sync_run,
)

log = logging.getLogger(__name__)

# Snapshot per data type, and the columns that key it.
SNAPSHOTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "districts": ("snap_clever__districts", ("district_slug", "clever_id")),
    "schools": ("snap_clever__schools", ("district_slug", "clever_id")),
    "users": ("snap_clever__users", ("district_slug", "clever_id")),
    "sections": ("snap_clever__sections", ("district_slug", "clever_id")),
    "terms": ("snap_clever__terms", ("district_slug", "clever_id")),
    "courses": ("snap_clever__courses", ("district_slug", "clever_id")),
    "enrollments": ("snap_clever__section_enrollments", ("district_slug", "section_id", "user_id", "role")),
}
SNAPSHOT_SCHEMA = "clever_snapshots"


class RunNotComplete(RuntimeError):
    """The run's extraction did not complete; nothing from it may be archived."""


class RunInProgress(RuntimeError):
    """Another run of the district is working; a district syncs one run at a time."""


# pg_advisory_lock(namespace, hashtext(slug)): each step of a run holds it shared while it
# works; start_run takes it exclusively, so it never starts beside a working run and can
# tell that an unfinished run is dead.
RUN_LEASE_NAMESPACE = 0x0C1E7E17
# How long a stopped extraction waits for its threads to notice (their next read or wait).
STOP_WAIT_SECONDS = 5.0


@contextmanager
def run_lease(conninfo: str, district_slug: str) -> Iterator[None]:
    """Held by a step of a run (extract, validate, approve, build, summarize) while it works."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock_shared(%s, hashtext(%s))", (RUN_LEASE_NAMESPACE, district_slug))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock_all()")


class StaleRun(RuntimeError):
    """A newer run of the district is already approved; approving an older one would
    roll the district back (archive what the newer run added)."""


def start_run(conninfo: str, district: DistrictConfig, endpoints: list[str] | None,
              external_run_id: str | None = None, params: dict[str, Any] | None = None) -> int:
    requested = list(endpoints or district.endpoints)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ensure_landing_schema(conn)
        if not conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                            (RUN_LEASE_NAMESPACE, district.slug)).fetchone()[0]:
            (live,) = conn.execute("SELECT max(sync_run_id) FROM clever_landing.sync_runs WHERE district_slug = %s",
                                   (district.slug,)).fetchone()
            raise RunInProgress(
                f"district {district.slug!r}: sync run {live} is still working (one of its steps is running); a "
                "district syncs one run at a time. Wait for it to end, or stop it, then trigger again.")
        try:
            _close_dead_runs(conn, district.slug)
            conn.execute("""INSERT INTO clever_landing.district_settings (district_slug, stale_after_hours)
                            VALUES (%s, %s) ON CONFLICT (district_slug) DO UPDATE
                            SET stale_after_hours = EXCLUDED.stale_after_hours, updated_at = clock_timestamp()""",
                         (district.slug, district.stale_limit_hours()))
            run = start_sync_run(conn, district.slug, district.api_version, requested, external_run_id, params)
        finally:
            conn.execute("SELECT pg_advisory_unlock_all()")
    log.info("district %s: sync run %d started (%s, endpoints: %s)",
             district.slug, run.sync_run_id, district.api_version, ", ".join(requested))
    return run.sync_run_id


def _close_dead_runs(conn: psycopg.Connection, district_slug: str) -> None:
    """Close the district's earlier runs that never ended: no step of them holds the run
    lease (the caller does), so they were killed. One still extracting ('started'), or
    extracted but never summarized (killed during validate, approve or build): both
    become 'failed', so nobody mistakes them for running. An approved extraction among
    them is applied by the next build, and reported by the next run's summary."""
    dead = conn.execute(
        """UPDATE clever_landing.sync_runs AS r
           SET status = 'failed', finished_at = coalesce(r.finished_at, clock_timestamp()),
               error = concat_ws('; ', r.error, CASE r.status
                   WHEN 'started' THEN 'abandoned: the run stopped before finishing'
                   ELSE 'abandoned: the run stopped after its extraction, in validate, approve or build' END)
           WHERE r.district_slug = %s AND (r.status = 'started' OR (r.status = 'completed' AND NOT EXISTS (
               SELECT 1 FROM clever_landing.run_summaries AS s WHERE s.sync_run_id = r.sync_run_id)))
           RETURNING r.sync_run_id""",
        (district_slug,)).fetchall()
    for (old_run,) in dead:
        conn.execute("""UPDATE clever_landing.endpoint_runs SET status = 'failed', error = 'abandoned',
                        finished_at = clock_timestamp() WHERE sync_run_id = %s AND status = 'started'""",
                     (old_run,))
        log.warning("district %s: sync run %d never finished; marked failed", district_slug, old_run)


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


def retrying_cannot_fix(error: BaseException) -> bool:
    """Whether an extraction failed for a reason another attempt cannot change (a token
    Clever rejects)."""
    causes = list(getattr(error, "causes", {}).values()) or [error.__cause__]
    return any(isinstance(cause, CleverAuthError) or isinstance(getattr(cause, "__cause__", None), CleverAuthError)
               for cause in causes)


def close_if_open(conninfo: str, sync_run_id: int) -> None:
    """Close a run whose extraction never closed (an endpoint failed for good): it becomes
    ``failed`` with the endpoints it lacks."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT status FROM clever_landing.sync_runs WHERE sync_run_id = %s",
                           (sync_run_id,)).fetchone()
        if row is not None and row[0] == "started":
            finish_sync_run(conn, sync_run_id)


def close_extraction(conninfo: str, sync_run_id: int) -> str:
    """Mark the run completed or failed from its endpoints; raise if it is not complete."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        status = finish_sync_run(conn, sync_run_id)
        if status != "completed":
            error = conn.execute("SELECT district_slug, error FROM clever_landing.sync_runs WHERE sync_run_id = %s",
                                 (sync_run_id,)).fetchone()
            raise RunNotComplete(f"district {error[0]!r}: sync run {sync_run_id} is not complete ({error[1]}); "
                                 "nothing from it will be snapshotted or archived")
    return status


def fail_run(conninfo: str, sync_run_id: int, step: str, error: BaseException) -> None:
    """Record that a step after extraction failed: the run becomes 'failed' (so it can
    never be approved later) and its error names the step."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            """UPDATE clever_landing.sync_runs
               SET status = 'failed', finished_at = coalesce(finished_at, clock_timestamp()),
                   error = concat_ws('; ', error, %s::text)
               WHERE sync_run_id = %s""",
            (f"{step}: {error}", sync_run_id),
        )


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
        deferred = {guard.GUARDED_TYPES[c.data_type][0] for c in checks if c.deferred}
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
            rows = conn.execute(
                """INSERT INTO clever_landing.approved_extractions (district_slug, endpoint, sync_run_id, synced_at)
                   SELECT %s, endpoint, sync_run_id, started_at FROM clever_landing.endpoint_runs
                   WHERE sync_run_id = %s AND status = 'completed' AND NOT endpoint = ANY(%s)
                   ON CONFLICT DO NOTHING
                   RETURNING endpoint""",
                (district_slug, sync_run_id, sorted(deferred)),
            ).fetchall()
    approved = sorted(r[0] for r in rows)
    log.info("district %s: run %d approved for snapshots: %s", district_slug, sync_run_id, ", ".join(approved))
    return approved


def build(target: WarehouseTarget, district: DistrictConfig, full_refresh: bool = False,
          lock_timeout_seconds: int = 3600) -> dict[str, Any]:
    """The district's dbt build (its snapshots, its rows of every table, its data tests),
    after writing its matching settings; other districts build side by side. Deploys the
    dbt project first if the warehouse was built with another version of it."""
    from clever.dbt_runner import build_districts
    from clever.matching import write_match_settings

    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        ensure_landing_schema(conn)
        write_match_settings(conn, district)
    outcome = build_districts(target, [district.slug], full_refresh=full_refresh,
                              lock_timeout_seconds=lock_timeout_seconds)
    for unique_id, message in outcome.warnings.items():
        log.warning("district %s: dbt test %s warned: %s", district.slug, unique_id, message)
    return {"started_at": outcome.started_at_epoch, "seconds": round(outcome.seconds, 1),
            "nodes": len(outcome.statuses),
            "warnings": {unique_id.split(".", 2)[-1]: message for unique_id, message in outcome.warnings.items()}}


def history_changes(conn: psycopg.Connection, district_slug: str, since: datetime) -> dict[str, dict[str, int]]:
    """Per data type: versions written since ``since`` for a district, by kind (added: no
    earlier version; restored: the previous version was an archive row)."""
    changes: dict[str, dict[str, int]] = {}
    for data_type, (snapshot, keys) in SNAPSHOTS.items():
        exists = conn.execute("SELECT to_regclass(%s)", (f"{SNAPSHOT_SCHEMA}.{snapshot}",)).fetchone()[0]
        if exists is None:
            continue
        key_list = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
        key_match = sql.SQL(" AND ").join(
            sql.SQL("e.{k} = r.{k}").format(k=sql.Identifier(k)) for k in keys)
        # Only the keys written since `since` are looked up in the district's older
        # history (both read through the snapshot's district-led indexes, so other
        # districts' rows are never read), joined by hash. A previous version was closed
        # when the next was written, so only closed versions (dbt_valid_to set) can be
        # one: on a first sync there are none to join.
        query = sql.SQL("""
            WITH recent AS (
                SELECT {keys}, dbt_valid_from, dbt_is_deleted FROM {t}
                WHERE district_slug = %(district)s AND dbt_valid_from >= (%(since)s AT TIME ZONE 'UTC')
            ),
            previous AS (
                SELECT DISTINCT ON ({r_keys}, r.dbt_valid_from) {r_keys}, r.dbt_valid_from,
                       e.dbt_is_deleted AS previous_is_deleted
                FROM recent AS r JOIN {t} AS e ON {km} AND e.dbt_valid_from < r.dbt_valid_from
                WHERE e.district_slug = %(district)s AND e.dbt_valid_to IS NOT NULL
                ORDER BY {r_keys}, r.dbt_valid_from, e.dbt_valid_from DESC
            )
            SELECT
              count(*) FILTER (WHERE r.dbt_is_deleted = 'True') AS archived,
              count(*) FILTER (WHERE r.dbt_is_deleted = 'False' AND p.previous_is_deleted = 'True') AS restored,
              count(*) FILTER (WHERE p.previous_is_deleted IS NULL) AS added,
              count(*) AS versions
            FROM recent AS r LEFT JOIN previous AS p USING ({keys}, dbt_valid_from)
        """).format(t=sql.Identifier(SNAPSHOT_SCHEMA, snapshot), keys=key_list, km=key_match,
                    r_keys=sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(k)) for k in keys))
        with conn.transaction():
            # Hash joins whatever the statistics say: one estimate of "no closed versions"
            # (as just after a first sync) turned this into a nested loop over a million rows.
            conn.execute("SET LOCAL enable_nestloop = off")
            archived, restored, added, versions = conn.execute(
                query, {"district": district_slug, "since": since}).fetchone()
        changes[data_type] = {
            "archived": archived, "restored": restored, "added": added,
            "changed": versions - archived - restored - added, "history_rows": versions,
        }
    return changes


def summarize(conninfo: str, sync_run_id: int, build_started_at: float | None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write and return the run summary (landed rows, history changes, durations)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ensure_landing_schema(conn)
        run = conn.execute(
            "SELECT district_slug, api_version, status, error, started_at, finished_at "
            "FROM clever_landing.sync_runs WHERE sync_run_id = %s", (sync_run_id,)).fetchone()
        endpoints = {
            e: {"status": s, "rows": n, "pages": p, "error": err}
            for e, s, n, p, err in conn.execute(
                "SELECT endpoint, status, row_count, page_count, error FROM clever_landing.endpoint_runs "
                "WHERE sync_run_id = %s ORDER BY endpoint", (sync_run_id,))
        }
        approved = [r[0] for r in conn.execute(
            "SELECT endpoint FROM clever_landing.approved_extractions WHERE sync_run_id = %s ORDER BY endpoint",
            (sync_run_id,))]
        guard_checks = {
            data_type: {"active_before": a, "would_archive": w, "limit": lim, "tripped": t, "overridden": o,
                        "would_change": wc, "change_limit": cl, "holds": holds or (["archive"] if t else [])}
            for data_type, a, w, lim, t, o, wc, cl, holds in conn.execute(
                "SELECT data_type, active_before, would_archive, limit_count, tripped, overridden, would_change, "
                "change_limit, holds FROM clever_landing.guard_checks WHERE sync_run_id = %s ORDER BY data_type",
                (sync_run_id,))
        }
        quarantined = {
            f"{endpoint}: {rule}": n for endpoint, rule, n in conn.execute(
                "SELECT endpoint, rule, count(*) FROM clever_landing.quarantine WHERE sync_run_id = %s "
                "GROUP BY endpoint, rule ORDER BY endpoint, rule", (sync_run_id,))
        }
        validated = {
            endpoint: {"records": records, "checked": checked, "baseline_run_id": baseline}
            for endpoint, records, checked, baseline in conn.execute(
                "SELECT endpoint, records, records_checked, baseline_run_id FROM clever_landing.validated_extractions "
                "WHERE sync_run_id = %s ORDER BY endpoint", (sync_run_id,))
        }
        warnings = {
            f"{endpoint}: {description}": n for endpoint, description, n in conn.execute(
                "SELECT endpoint, description, unexpected_count FROM clever_landing.validation_results "
                "WHERE sync_run_id = %s AND NOT success AND severity <> 'critical' ORDER BY endpoint, description",
                (sync_run_id,))
        }
        changes = {}
        if build_started_at is not None:
            # What was written for this run's extraction: every version of the district since
            # its approval. The district's own build writes them, or a deploy build another
            # district's build started (it waits for this approval to commit, so its writes
            # come after it); no other build writes this district's history meanwhile.
            # Earlier approvals no successful run reported (their build failed or was
            # killed) were applied by this build too: their changes are counted here.
            (approved_at,) = conn.execute(
                """SELECT min(a.approved_at) FROM clever_landing.approved_extractions AS a
                   WHERE a.district_slug = %(district)s AND a.sync_run_id <= %(run)s
                     AND (a.sync_run_id = %(run)s OR a.sync_run_id > coalesce((
                         SELECT max(s.sync_run_id) FROM clever_landing.run_summaries AS s
                         WHERE s.district_slug = %(district)s AND s.status = 'succeeded'
                           AND s.sync_run_id < %(run)s), 0))""",
                {"district": run[0], "run": sync_run_id}).fetchone()
            since = approved_at or datetime.fromtimestamp(build_started_at, UTC)
            changes = history_changes(conn, run[0], since)
        summary = {
            "sync_run_id": sync_run_id, "district": run[0], "api_version": run[1],
            "extraction_status": run[2], "error": run[3],
            "started_at": run[4].isoformat(), "extraction_finished_at": run[5].isoformat() if run[5] else None,
            "endpoints": endpoints, "approved_endpoints": approved, "history": changes,
            "guard": guard_checks, "validated": validated, "quarantined": quarantined,
            "validation_warnings": warnings,
            "built": build_started_at is not None, **(extra or {}),
        }
        status = "succeeded" if build_started_at is not None else "failed"
        with conn.transaction():
            conn.execute(
                """INSERT INTO clever_landing.run_summaries (sync_run_id, district_slug, status, summary)
                   VALUES (%s, %s, %s, %s)
                   ON CONFLICT (sync_run_id) DO UPDATE SET status = EXCLUDED.status, summary = EXCLUDED.summary,
                                                         created_at = clock_timestamp()""",
                (sync_run_id, run[0], status, json.dumps(summary)),
            )
    return summary


def data_docs_hint(district_slug: str, sync_run_id: int) -> str | None:
    from clever.validation import data_docs_index

    index = data_docs_index(district_slug, sync_run_id)
    return str(index) if index.exists() else None


def dbt_docs_hint() -> str:
    from clever.dbt_runner import target_path

    index = target_path() / "index.html"
    return str(index) if index.exists() else "not built yet: run `make docs`"


def run_summary(conninfo: str, sync_run_id: int) -> dict[str, Any] | None:
    """The summary ``summarize`` recorded for a run, None if it has none yet."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT summary FROM clever_landing.run_summaries WHERE sync_run_id = %s",
                           (sync_run_id,)).fetchone()
    return row[0] if row else None


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"Clever sync run {summary['sync_run_id']} for district {summary['district']!r} "
             f"({summary['api_version']}): extraction {summary['extraction_status']}"]
    if summary.get("error"):
        lines.append(f"  error: {summary['error']}")
    for endpoint, info in summary["endpoints"].items():
        lines.append(f"  {endpoint:<10} {info['status']:<9} {info['rows']:>9} rows in {info['pages']} page(s)")
    for endpoint, check in summary.get("validated", {}).items():
        if check["baseline_run_id"] is not None:
            lines.append(f"  validated {endpoint}: {check['checked']} of {check['records']} records, new or changed "
                         f"since run {check['baseline_run_id']}")
    for data_type, check in summary.get("guard", {}).items():
        if check["tripped"]:
            verdict = "allowed by allow_mass_archive" if check["overridden"] else "BLOCKED"
            holds = [h for h in check.get("holds") or ["archive"] if h != "paused"]
            counts = {"archive": f"would archive {check['would_archive']} of {check['active_before']} "
                                 f"(limit {check['limit']})",
                      "change": f"would change {check.get('would_change')} of {check['active_before']} "
                                f"(limit {check.get('change_limit')})"}
            lines.append(f"  guard: {data_type} " + "; ".join(counts[h] for h in holds) + f": {verdict}")
        elif "paused" in (check.get("holds") or []):
            lines.append(f"  guard: {data_type} would archive {check['would_archive']} of {check['active_before']}: "
                         "not applied while Clever pauses the district (or reports an error); applied at the "
                         "first sync after it")
    for rule, count in summary.get("quarantined", {}).items():
        lines.append(f"  quarantined {count} record(s): {rule}")
    for rule, count in summary.get("validation_warnings", {}).items():
        lines.append(f"  warning, {count} record(s): {rule}")
    for data_type, change in summary.get("history", {}).items():
        lines.append(f"  {data_type:<12} +{change['added']} new, {change['changed']} changed, "
                     f"{change['archived']} archived, {change['restored']} restored")
    for test, message in summary.get("dbt_test_warnings", {}).items():
        lines.append(f"  dbt test warning, district {summary['district']!r}: {test}: {message}")
    for key in ("data_docs", "dbt_docs"):
        if summary.get(key):
            lines.append(f"  {key.replace('_', ' ')}: {summary[key]}")
    return "\n".join(lines)
