"""Run tracking: the one module that changes the state of a sync run
(``clever_landing.sync_runs``) and of its endpoints' extractions (``endpoint_runs``).
Every step calls it; nothing else writes those tables.

A run is ``started`` while it extracts, then ``completed`` only if every endpoint it asked
for completed, else ``failed``; a step after extraction that fails marks it ``failed``
naming the step. Later steps read an endpoint's rows only from a completed extraction.
Each step of a run holds the district's run lease, so a new run never starts beside a
working one and can tell that an unfinished run is dead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from clever.config import DistrictConfig
from clever.warehouse import ensure_landing_schema, landing_table

log = logging.getLogger(__name__)


class RunNotComplete(RuntimeError):
    """The run's extraction did not complete; nothing from it may be archived."""


class RunInProgress(RuntimeError):
    """Another run of the district is working; a district syncs one run at a time."""


# pg_advisory_lock(namespace, hashtext(slug)): each step of a run holds it shared while it
# works; start_run takes it exclusively, so it never starts beside a working run and can
# tell that an unfinished run is dead.
RUN_LEASE_NAMESPACE = 0x0C1E7E17


@contextmanager
def run_lease(conninfo: str, district_slug: str) -> Iterator[None]:
    """Held by a step of a run (extract, validate, approve, build, summarize) while it works."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock_shared(%s, hashtext(%s))", (RUN_LEASE_NAMESPACE, district_slug))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock_all()")


@dataclass(frozen=True)
class RunMode:
    """What a run reads: ``full`` (every record) or ``events`` (after ``cursor``); ``reason``
    says why an events district's run is a full sync."""

    mode: str = "full"
    reason: str | None = None
    cursor: str | None = None


@dataclass(frozen=True)
class SyncRun:
    sync_run_id: int
    district_slug: str
    api_version: str
    endpoints: tuple[str, ...]
    integration: str = "secure_sync"  # clever.integrations: what the district's token reads


def start_sync_run(
    conn: psycopg.Connection,
    district_slug: str,
    api_version: str,
    endpoints: Iterable[str],
    external_run_id: str | None = None,
    params: dict[str, Any] | None = None,
    mode: str = "full",
    mode_reason: str | None = None,
    events_from: str | None = None,
    integration: str = "secure_sync",
) -> SyncRun:
    endpoints = tuple(endpoints)
    with conn.transaction():
        row = conn.execute(
            """INSERT INTO clever_landing.sync_runs
                   (district_slug, api_version, endpoints, external_run_id, params, mode, mode_reason, events_from,
                    integration)
               VALUES (%s, %s, %s::text[], %s, %s, %s, %s, %s, %s) RETURNING sync_run_id""",
            (district_slug, api_version, list(endpoints), external_run_id, json.dumps(params or {}), mode,
             mode_reason, events_from, integration),
        ).fetchone()
    return SyncRun(row[0], district_slug, api_version, endpoints, integration)


def run_mode(conn: psycopg.Connection, sync_run_id: int) -> str:
    """'full' or 'events' (clever.events)."""
    return conn.execute("SELECT mode FROM clever_landing.sync_runs WHERE sync_run_id = %s",
                        (sync_run_id,)).fetchone()[0]


def get_sync_run(conn: psycopg.Connection, sync_run_id: int) -> SyncRun:
    row = conn.execute(
        "SELECT district_slug, api_version, endpoints, integration FROM clever_landing.sync_runs "
        "WHERE sync_run_id = %s", (sync_run_id,),
    ).fetchone()
    if row is None:
        raise LookupError(f"sync run {sync_run_id} does not exist")
    return SyncRun(sync_run_id, row[0], row[1], tuple(row[2]), row[3])


def finish_sync_run(conn: psycopg.Connection, sync_run_id: int, error: str | None = None) -> str:
    """Close a run: ``completed`` only if every requested endpoint completed (or Clever
    refused it as outside the token's scope, see endpoint_out_of_scope) and no error was
    given; otherwise ``failed``. Returns the status written. A run closed already
    (failed by a step) may be closed again, as an operator does after fixing what failed,
    unless a newer run of the district has started: then it stays as it is."""
    with conn.transaction():
        row = conn.execute(
            """SELECT status, EXISTS (SELECT 1 FROM clever_landing.sync_runs AS n
                                      WHERE n.district_slug = r.district_slug AND n.sync_run_id > r.sync_run_id)
               FROM clever_landing.sync_runs AS r WHERE sync_run_id = %s FOR UPDATE""",
            (sync_run_id,)).fetchone()
        if row is None:
            raise LookupError(f"sync run {sync_run_id} does not exist")
        if row[0] != "started" and row[1]:
            return row[0]
        incomplete = conn.execute(
            """SELECT e AS endpoint FROM clever_landing.sync_runs r, unnest(r.endpoints) e
               WHERE r.sync_run_id = %s
                 AND NOT EXISTS (SELECT 1 FROM clever_landing.endpoint_runs er
                                 WHERE er.sync_run_id = r.sync_run_id AND er.endpoint = e
                                   AND er.status IN ('completed', 'out_of_scope'))""",
            (sync_run_id,),
        ).fetchall()
        if incomplete and error is None:
            error = "incomplete endpoints: " + ", ".join(r[0] for r in incomplete)
        status = "failed" if error else "completed"
        conn.execute(
            """UPDATE clever_landing.sync_runs
               SET status = %s, finished_at = clock_timestamp(), error = %s
               WHERE sync_run_id = %s""",
            (status, error, sync_run_id),
        )
    return status


def completed_endpoints(conn: psycopg.Connection, sync_run_id: int) -> set[str]:
    rows = conn.execute(
        "SELECT endpoint FROM clever_landing.endpoint_runs WHERE sync_run_id = %s AND status = 'completed'",
        (sync_run_id,),
    ).fetchall()
    return {r[0] for r in rows}


def pruned_endpoints(conn: psycopg.Connection, sync_run_id: int) -> list[str]:
    """The endpoints of a run whose landing rows retention has pruned (clever.retention):
    such an extraction can no longer be validated or approved."""
    return [row[0] for row in conn.execute(
        "SELECT endpoint FROM clever_landing.endpoint_runs WHERE sync_run_id = %s AND pruned_at IS NOT NULL "
        "ORDER BY endpoint", (sync_run_id,))]


# -- an endpoint's extraction ---------------------------------------------------------------
def endpoint_started(conn: psycopg.Connection, sync_run_id: int, endpoint: str) -> None:
    """(Re)start an endpoint's extraction: counts reset, any earlier attempt forgotten."""
    conn.execute(
        """INSERT INTO clever_landing.endpoint_runs (sync_run_id, endpoint) VALUES (%s, %s)
           ON CONFLICT (sync_run_id, endpoint) DO UPDATE
           SET status = 'started', row_count = 0, page_count = 0, error = NULL,
               started_at = clock_timestamp(), finished_at = NULL, pruned_at = NULL, pruned_rows = NULL""",
        (sync_run_id, endpoint))


def endpoint_resumed(conn: psycopg.Connection, sync_run_id: int, endpoint: str) -> None:
    """(Re)start an extraction that goes on from the pages it landed (an events read)."""
    conn.execute(
        """INSERT INTO clever_landing.endpoint_runs (sync_run_id, endpoint) VALUES (%s, %s)
           ON CONFLICT (sync_run_id, endpoint) DO UPDATE SET status = 'started', error = NULL, finished_at = NULL""",
        (sync_run_id, endpoint))


def events_page_landed(conn: psycopg.Connection | psycopg.Cursor, sync_run_id: int, events: int, last_event: str,
                       pages: int = 1) -> None:
    """Count a landed page of events and move the run's cursor, in the transaction that landed it."""
    conn.execute(
        """UPDATE clever_landing.endpoint_runs SET row_count = row_count + %s, page_count = page_count + %s
           WHERE sync_run_id = %s AND endpoint = 'events'""", (events, pages, sync_run_id))
    conn.execute("UPDATE clever_landing.sync_runs SET events_to = %s WHERE sync_run_id = %s", (last_event, sync_run_id))


def set_events_cursor(conninfo: str, sync_run_id: int, cursor: str | None, note: str | None = None) -> None:
    """A full sync's events cursor: the latest event when it started (None: no events)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("UPDATE clever_landing.sync_runs SET events_to = %s, mode_reason = concat_ws('; ', mode_reason, "
                     "%s::text) WHERE sync_run_id = %s", (cursor, note, sync_run_id))


def fall_back_to_full(conninfo: str, sync_run_id: int, reason: str) -> None:
    """An events run that cannot read events becomes a full sync of the same run: what it
    landed of events is dropped (nothing of it was applied)."""
    from clever.catalog import ENDPOINTS

    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        conn.execute("UPDATE clever_landing.sync_runs SET mode = 'full', mode_reason = %s, events_from = NULL, "
                     "events_to = NULL WHERE sync_run_id = %s", (reason, sync_run_id))
        conn.execute("DELETE FROM clever_landing.events WHERE sync_run_id = %s", (sync_run_id,))
        conn.execute("DELETE FROM clever_landing.event_changes WHERE sync_run_id = %s", (sync_run_id,))
        for endpoint in ENDPOINTS:
            conn.execute(sql.SQL("DELETE FROM {} WHERE sync_run_id = %s").format(landing_table(endpoint)),
                         (sync_run_id,))
        conn.execute("DELETE FROM clever_landing.endpoint_runs WHERE sync_run_id = %s", (sync_run_id,))


def page_landed(conn: psycopg.Connection | psycopg.Cursor, sync_run_id: int, endpoint: str, rows: int) -> None:
    """Count a landed page, in the transaction that landed it."""
    conn.execute(
        """UPDATE clever_landing.endpoint_runs SET row_count = row_count + %s, page_count = page_count + 1
           WHERE sync_run_id = %s AND endpoint = %s""", (rows, sync_run_id, endpoint))


def endpoint_completed(conn: psycopg.Connection, sync_run_id: int, endpoint: str) -> None:
    conn.execute(
        """UPDATE clever_landing.endpoint_runs SET status = 'completed', finished_at = clock_timestamp()
           WHERE sync_run_id = %s AND endpoint = %s""", (sync_run_id, endpoint))


def endpoint_failed(conn: psycopg.Connection, sync_run_id: int, endpoint: str, error: str) -> None:
    conn.execute(
        """UPDATE clever_landing.endpoint_runs SET status = 'failed', error = %s, finished_at = clock_timestamp()
           WHERE sync_run_id = %s AND endpoint = %s""", (error, sync_run_id, endpoint))


def endpoint_out_of_scope(conn: psycopg.Connection, sync_run_id: int, endpoint: str, reason: str) -> None:
    """Clever refused the endpoint as outside the token's scope (clever.integrations): it
    was not read, so it is not approved (its last approved extraction stays current, and
    nothing of it is archived), and the run can still complete without it."""
    conn.execute(
        """UPDATE clever_landing.endpoint_runs SET status = 'out_of_scope', error = %s, finished_at = clock_timestamp()
           WHERE sync_run_id = %s AND endpoint = %s""", (reason, sync_run_id, endpoint))


def endpoint_pruned(conn: psycopg.Connection, sync_run_id: int, endpoint: str, rows: int) -> None:
    """Landing retention deleted ``rows`` of this extraction (clever.retention)."""
    conn.execute(
        """UPDATE clever_landing.endpoint_runs
           SET pruned_at = clock_timestamp(), pruned_rows = coalesce(pruned_rows, 0) + %s
           WHERE sync_run_id = %s AND endpoint = %s""", (rows, sync_run_id, endpoint))


# -- a run -----------------------------------------------------------------------------------------
def start_run(conninfo: str, district: DistrictConfig, endpoints: list[str] | None,
              external_run_id: str | None = None, params: dict[str, Any] | None = None,
              plan: Callable[[psycopg.Connection], RunMode] | None = None) -> int:
    """A new run of the district: a full sync, or what ``plan(conn)`` decides under the
    run lease (clever.events.plan_mode: an events run, or a full sync and why)."""
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
            conn.execute("""INSERT INTO clever_landing.district_settings
                                (district_slug, stale_after_hours, integration) VALUES (%s, %s, %s)
                            ON CONFLICT (district_slug) DO UPDATE
                            SET stale_after_hours = EXCLUDED.stale_after_hours, integration = EXCLUDED.integration,
                                updated_at = clock_timestamp()""",
                         (district.slug, district.stale_limit_hours(), district.integration))
            mode = plan(conn) if plan is not None else RunMode()
            if mode.mode == "events":
                requested = list(district.endpoints)  # events come for every type at once
            run = start_sync_run(conn, district.slug, district.api_version, requested, external_run_id, params,
                                 mode.mode, mode.reason, mode.cursor, district.integration)
        finally:
            conn.execute("SELECT pg_advisory_unlock_all()")
    log.info("district %s: sync run %d started (%s, %s, %s%s, endpoints: %s)", district.slug, run.sync_run_id,
             district.api_version, district.integration, mode.mode, f": {mode.reason}" if mode.reason else "",
             ", ".join(requested))
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
