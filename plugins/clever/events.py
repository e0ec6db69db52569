"""Clever's Events API: incremental runs of an events district (``sync_mode: events``).

A district in events mode starts from a full sync (its *base*). Each later run reads the
events Clever listed since the district's cursor (the last event applied), page by page,
and lands them as they came (``clever_landing.events``, one COPY a page, the cursor
committed with the page). When the read is complete, each record's last event of the run
becomes the run's change to it (``event_changes``): a created or updated record is
landed as a record of the run, as a full sync lands it; a deleted one is a deletion. From
there the run goes through the same steps as a full sync (validation of each changed
record, the mass-archive guard counting deletions, approval, the dbt build), and the
staging views read the approved changes over the base (``applied_changes``): a deleted
record is archived by its deletion event, never by its absence.

A run is a full sync instead (:func:`plan_mode`) for the district's first run, when a
full sync is due (``full_sync_schedule``) or asked for (the trigger's ``sync_mode``), and
when events cannot be used: no cursor, a cursor older than Clever's retention, or Clever
answering 404 (the only error its events spec lists: events not enabled for the
district, or a cursor it does not hold). A full sync records where the events stood when
it started, so the next events run replays what changed during it.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from clever import runs
from clever.client import CleverAPIError, CleverClient, CleverNotFound
from clever.config import DistrictConfig
from clever.extract import BadRecordError, ExtractionError, ExtractionStopped, serialise
from clever.runs import RunMode, SyncRun, get_sync_run
from clever.warehouse import landing_table

log = logging.getLogger(__name__)

EVENTS = "events"  # the endpoint_runs row of an events run's read
ACTIONS = ("created", "updated", "deleted")
# "Before the first event": events were enabled but none had happened yet.
NO_EVENTS_YET = ""


class EventsUnavailable(ExtractionError):
    """Clever answered 404 for the district's events: not enabled, or the cursor is not
    held (unknown, or older than the retention). The run falls back to a full sync."""


def _full_sync_due(schedule: str | None, last_full: datetime | None, now: datetime) -> bool:
    """Whether a tick of ``schedule`` has passed since the base full sync started."""
    if schedule is None or last_full is None:
        return False
    from croniter import croniter  # reads Airflow's presets (@weekly...) as well as cron expressions

    return croniter(schedule, now).get_prev(datetime) > last_full


def plan_mode(conn: psycopg.Connection, district: DistrictConfig, requested: str = "auto",
              now: datetime | None = None) -> RunMode:
    """Whether this run of ``district`` reads events, or is a full sync and why."""
    if district.sync_mode != "events":
        if requested == "events":
            raise ValueError(f"district {district.slug!r} has sync_mode full; set sync_mode: events in "
                             "config/districts.yml to sync it by events")
        return RunMode("full")
    if requested == "full":
        return RunMode("full", "full sync requested by the trigger")
    now = now or datetime.now(UTC)
    rows = conn.execute(
        """SELECT c.endpoint, c.events_cursor, c.synced_at, b.started_at
           FROM clever_landing.current_extractions AS c
           JOIN clever_landing.sync_runs AS b ON b.sync_run_id = c.base_run_id
           WHERE c.district_slug = %s AND c.endpoint = ANY(%s)""",
        (district.slug, list(district.endpoints))).fetchall()
    found = {row[0]: row[1:] for row in rows}
    missing = [e for e in district.endpoints if e not in found]
    if missing:
        return RunMode("full", f"baseline: no approved full sync of {', '.join(missing)} yet")
    no_cursor = sorted(e for e, (cursor, _, _) in found.items() if cursor is None)
    if no_cursor:
        return RunMode("full", f"no events cursor for {', '.join(no_cursor)}: Clever's Events API did not answer "
                               "at the last full sync (events not enabled for the district?)")
    oldest = min(synced for _, synced, _ in found.values())
    if now - oldest > timedelta(days=district.events_retention_days):
        return RunMode("full", f"the events cursor is from {oldest:%Y-%m-%d %H:%M} UTC, older than the "
                               f"{district.events_retention_days:g} days Clever keeps events")
    base_started = min(started for _, _, started in found.values())
    if requested != "events" and _full_sync_due(district.full_sync_schedule, base_started, now):
        return RunMode("full", f"scheduled full sync ({district.full_sync_schedule}; the last one started "
                               f"{base_started:%Y-%m-%d %H:%M} UTC)")
    cursor = min(cursor for cursor, _, _ in found.values())
    return RunMode("events", None, cursor)


def _client(district: DistrictConfig, base_url: str, token: str, stop: threading.Event | None) -> CleverClient:
    return CleverClient(base_url, token, district=district.slug, api_version=district.api_version,
                        page_size=district.page_size, max_attempts=district.http_max_attempts,
                        backoff_max=district.http_backoff_max_seconds,
                        page_timeout=district.http_page_timeout_seconds, stop=stop)


def latest_event_id(client: CleverClient) -> str:
    """The id of the district's latest event (``ending_before=last``, one event), or
    NO_EVENTS_YET; raises EventsUnavailable on Clever's 404."""
    try:
        page = next(client.iter_pages(EVENTS, {"ending_before": "last", "limit": 1}))
    except CleverNotFound as exc:
        raise EventsUnavailable(str(exc)) from exc
    ids = [event.get("id") for event in page.records if isinstance(event.get("id"), str)]
    return max(ids) if ids else NO_EVENTS_YET


def mark_full_sync_cursor(conninfo: str, district: DistrictConfig, sync_run_id: int, base_url: str,
                          token: str) -> str | None:
    """Before a full sync of an events district reads anything: record the latest event,
    where the next events run starts (what changes during the sync is replayed then;
    applying an event again changes nothing). None when Clever has no events for it."""
    with _client(district, base_url, token, None) as client:
        try:
            cursor = latest_event_id(client)
        except EventsUnavailable as exc:
            log.warning("district %s, run %d: no events cursor (%s); the next run is a full sync too",
                        district.slug, sync_run_id, exc)
            runs.set_events_cursor(conninfo, sync_run_id, None, note=f"events unavailable: {exc}")
            return None
    runs.set_events_cursor(conninfo, sync_run_id, cursor)
    log.info("district %s, run %d: events cursor %r recorded before the full sync", district.slug, sync_run_id,
             cursor or "(no events yet)")
    return cursor


# -- reading events ------------------------------------------------------------------------
_COPY = sql.SQL("COPY clever_landing.events (sync_run_id, event_id, event_type, endpoint, action, clever_id, raw, "
                "extracted_at) FROM STDIN")


def _event_row(event: Any, run: SyncRun, page: int, position: int) -> tuple[str, str | None, str | None, str | None,
                                                                          str | None, str]:
    """(event_id, type, endpoint, action, clever_id, JSON) of an event; raises naming the
    district and the event when it cannot be applied (no id, or a record without one)."""
    where = f"Clever district {run.district_slug!r}, endpoint 'events': page {page}, item {position}"
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
        raise BadRecordError(f"{where} has no event id; events cannot be applied in order without one. Trigger "
                             "a full sync (sync_mode: full) if Clever keeps sending it")
    event_type = event.get("type") if isinstance(event.get("type"), str) else None
    endpoint, _, action = (event_type or "").partition(".")
    record = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
    clever_id = record.get("id") if isinstance(record, dict) and isinstance(record.get("id"), str) else None
    if endpoint in run.endpoints and (action not in ACTIONS or clever_id is None):
        raise BadRecordError(f"{where}: event {event['id']!r} ({event_type}) has no record with a Clever id in "
                             "data.object, or an unknown action; it cannot be applied. Trigger a full sync "
                             "(sync_mode: full) if Clever keeps sending it")
    return (event["id"], event_type, endpoint or None, action or None, clever_id,
            serialise(event, run, EVENTS, page, position))


class _CannotResume(RuntimeError):
    pass


def _carry_failed_read(conn: psycopg.Connection, run: SyncRun, events_from: str) -> str | None:
    """Resume where the district's last events run stopped: if it failed (read cut short,
    validation, a guard hold) after landing pages from the same cursor, those events are
    taken over (nothing of them was applied) and reading goes on after its last one."""
    row = conn.execute(
        """SELECT r.sync_run_id, r.events_to, e.row_count, e.page_count FROM clever_landing.sync_runs AS r
           JOIN clever_landing.endpoint_runs AS e ON e.sync_run_id = r.sync_run_id AND e.endpoint = %s
           WHERE r.district_slug = %s AND r.sync_run_id < %s AND r.mode = 'events' AND r.status = 'failed'
             AND r.events_from = %s AND r.events_to IS NOT NULL AND e.pruned_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM clever_landing.approved_extractions AS a
                             WHERE a.district_slug = r.district_slug AND a.sync_run_id >= r.sync_run_id)
           ORDER BY r.sync_run_id DESC LIMIT 1""",
        (EVENTS, run.district_slug, run.sync_run_id, events_from)).fetchone()
    if row is None:
        return None
    previous, events_to, count, pages = row
    with conn.transaction():
        copied = conn.execute(
            """INSERT INTO clever_landing.events (sync_run_id, event_id, event_type, endpoint, action, clever_id,
                                                  raw, extracted_at)
               SELECT %s, event_id, event_type, endpoint, action, clever_id, raw, extracted_at
               FROM clever_landing.events WHERE sync_run_id = %s AND event_id <= %s""",
            (run.sync_run_id, previous, events_to)).rowcount
        if copied != count:  # pruned meanwhile: the transaction rolls back, reading starts at the cursor
            raise _CannotResume(f"run {previous} landed {count} events, {copied} are left")
        runs.events_page_landed(conn, run.sync_run_id, copied, events_to, pages=pages)
    log.info("district %s, run %d: resuming after run %d, which failed after landing %d event(s) in %d page(s) "
             "(up to %s)", run.district_slug, run.sync_run_id, previous, copied, pages, events_to)
    return events_to


def read_events(conn: psycopg.Connection, client: CleverClient, run: SyncRun,
                stop: threading.Event | None = None) -> int:
    """Land every event after the run's cursor, a page per transaction with the cursor it
    reached; a retry of the task goes on after the last page landed. Returns how many the
    run holds. Raises EventsUnavailable on Clever's 404, ExtractionError on any failure."""
    events_from, events_to = conn.execute("SELECT events_from, events_to FROM clever_landing.sync_runs "
                                          "WHERE sync_run_id = %s", (run.sync_run_id,)).fetchone()
    runs.endpoint_resumed(conn, run.sync_run_id, EVENTS)
    if events_to is None:
        try:
            events_to = _carry_failed_read(conn, run, events_from)
        except _CannotResume as exc:
            log.warning("district %s: could not resume the last failed events run (%s); reading from the cursor",
                        run.district_slug, exc)
    cursor = events_to or events_from
    params = {"starting_after": cursor} if cursor else {}
    try:
        for page in client.iter_pages(EVENTS, params):
            if stop is not None and stop.is_set():
                raise ExtractionStopped(f"Clever district {run.district_slug!r}, endpoint 'events': stopped (the "
                                        "task was stopped, e.g. by its time limit)")
            extracted_at = datetime.now(UTC)
            rows = [_event_row(event, run, page.number, position) for position, event in enumerate(page.records, 1)]
            if not rows:
                continue
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(_COPY) as copy:
                    for row in rows:
                        copy.write_row((run.sync_run_id, *row[:5], row[5], extracted_at))
                runs.events_page_landed(cur, run.sync_run_id, len(rows), rows[-1][0])
            log.info("district %s, events: page %d landed (%d events, up to %s)", run.district_slug, page.number,
                     len(rows), rows[-1][0])
    except CleverNotFound as exc:
        _failed(conn, run, str(exc))
        raise EventsUnavailable(str(exc)) from exc
    except (CleverAPIError, BadRecordError, ExtractionStopped, psycopg.Error) as exc:
        message = str(exc) if not isinstance(exc, psycopg.Error) else (
            f"Clever district {run.district_slug!r}, endpoint 'events': warehouse error: {exc}")
        _failed(conn, run, message)
        raise ExtractionError(message) from exc
    except BaseException as exc:
        _failed(conn, run, f"interrupted: {type(exc).__name__}: {exc}")
        raise
    # No new event: the run's changes reach as far as the cursor it read after.
    conn.execute("UPDATE clever_landing.sync_runs SET events_to = coalesce(events_to, events_from) "
                 "WHERE sync_run_id = %s", (run.sync_run_id,))
    return conn.execute("SELECT row_count FROM clever_landing.endpoint_runs WHERE sync_run_id = %s AND endpoint = %s",
                        (run.sync_run_id, EVENTS)).fetchone()[0]


def _failed(conn: psycopg.Connection, run: SyncRun, message: str) -> None:
    try:
        with conn.transaction():
            runs.endpoint_failed(conn, run.sync_run_id, EVENTS, message)
    except psycopg.Error:
        log.exception("district %s: could not record the events read's failure", run.district_slug)


# -- from events to changes -------------------------------------------------------------------
def apply_to_endpoints(conn: psycopg.Connection, run: SyncRun) -> dict[str, dict[str, int]]:
    """Each record's last event of the run, for the endpoints the run syncs and after each
    endpoint's own cursor, as the run's changes; created and updated records landed as the
    run's records. Every endpoint of the run is then completed. Returns, per endpoint, how
    many records were created, updated and deleted."""
    cursors = dict(conn.execute(
        "SELECT endpoint, events_cursor FROM clever_landing.current_extractions WHERE district_slug = %s",
        (run.district_slug,)).fetchall())
    with conn.transaction():
        conn.execute("DELETE FROM clever_landing.event_changes WHERE sync_run_id = %s", (run.sync_run_id,))
        conn.execute(
            """INSERT INTO clever_landing.event_changes (sync_run_id, endpoint, clever_id, action, event_id)
               SELECT DISTINCT ON (endpoint, clever_id) sync_run_id, endpoint, clever_id, action, event_id
               FROM clever_landing.events
               WHERE sync_run_id = %s AND endpoint = ANY(%s) AND event_id > coalesce(%s::jsonb ->> endpoint, '')
               ORDER BY endpoint, clever_id, event_id DESC""",
            (run.sync_run_id, list(run.endpoints), Jsonb({e: c for e, c in cursors.items() if c})))
        for endpoint in run.endpoints:
            runs.endpoint_started(conn, run.sync_run_id, endpoint)
            district_id = sql.SQL("c.clever_id" if endpoint == "districts" else
                                  "CASE WHEN jsonb_typeof(e.raw #> '{data,object,district}') = 'string' "
                                  "THEN e.raw #>> '{data,object,district}' END")
            conn.execute(sql.SQL("DELETE FROM {} WHERE sync_run_id = %s").format(landing_table(endpoint)),
                         (run.sync_run_id,))
            landed = conn.execute(sql.SQL(
                """INSERT INTO {landing} (sync_run_id, district_id, clever_id, api_version, raw, extracted_at)
                   SELECT c.sync_run_id, {district_id}, c.clever_id, %s, e.raw #> '{{data,object}}', e.extracted_at
                   FROM clever_landing.event_changes AS c
                   JOIN clever_landing.events AS e ON e.sync_run_id = c.sync_run_id AND e.event_id = c.event_id
                   WHERE c.sync_run_id = %s AND c.endpoint = %s AND c.action <> 'deleted'""").format(
                landing=landing_table(endpoint), district_id=district_id),
                (run.api_version, run.sync_run_id, endpoint)).rowcount
            runs.page_landed(conn, run.sync_run_id, endpoint, landed)
            runs.endpoint_completed(conn, run.sync_run_id, endpoint)
    conn.execute("ANALYZE clever_landing.event_changes")
    return applied_counts(conn, run.sync_run_id)


def extract_events_run(conninfo: str, district: DistrictConfig, sync_run_id: int, base_url: str, token: str,
                       stop: threading.Event | None = None) -> dict[str, Any]:
    """An events run's extraction: read the events, turn them into the run's changes, close
    the extraction. Raises EventsUnavailable (the caller falls back to a full sync) or
    ExtractionError."""
    started = time.monotonic()
    with psycopg.connect(conninfo, autocommit=True) as conn, _client(district, base_url, token, stop) as client:
        run = get_sync_run(conn, sync_run_id)
        read = read_events(conn, client, run, stop)
        with conn.transaction():
            runs.endpoint_completed(conn, sync_run_id, EVENTS)
        changes = apply_to_endpoints(conn, run)
        ignored = dict(conn.execute(
            """SELECT coalesce(event_type, '(no type)'), count(*) FROM clever_landing.events
               WHERE sync_run_id = %s AND (endpoint IS NULL OR NOT endpoint = ANY(%s)) GROUP BY 1""",
            (sync_run_id, list(run.endpoints))).fetchall())
    runs.close_extraction(conninfo, sync_run_id)
    log.info("district %s, run %d: %d event(s) read, changes %s%s (%.1fs)", district.slug, sync_run_id, read,
             changes, f"; not applied (types the district does not sync): {ignored}" if ignored else "",
             time.monotonic() - started)
    return {"mode": "events", "events": read, "changes": changes, "ignored_events": ignored}


def applied_counts(conn: psycopg.Connection, sync_run_id: int) -> dict[str, dict[str, int]]:
    """Per endpoint, how many records the run created, updated and deleted."""
    counts: dict[str, dict[str, int]] = {}
    for endpoint, action, count in conn.execute(
            "SELECT endpoint, action, count(*) FROM clever_landing.event_changes WHERE sync_run_id = %s "
            "GROUP BY endpoint, action ORDER BY endpoint, action", (sync_run_id,)):
        counts.setdefault(endpoint, {})[action] = count
    return counts


def complete_build_due(conninfo: str, district: DistrictConfig, sync_run_id: int,
                       now: datetime | None = None) -> bool:
    """Whether this run's dbt build is complete (data tests, rollover report): always for a
    full sync; for an events run when the district's last complete build succeeded more
    than ``events_complete_build_hours`` ago (or never)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if runs.run_mode(conn, sync_run_id) != "events":
            return True
        (last,) = conn.execute(
            """SELECT max(created_at) FROM clever_landing.run_summaries
               WHERE district_slug = %s AND status = 'succeeded'
                 AND coalesce((summary ->> 'complete_build')::boolean, true)""", (district.slug,)).fetchone()
    now = now or datetime.now(UTC)
    return last is None or now - last >= timedelta(hours=district.events_complete_build_hours)
