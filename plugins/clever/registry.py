"""District connections: which districts are connected to the application, and which not.

The warehouse table ``clever_landing.district_connections`` is the record: discovery
(clever.discovery) adds the districts it finds in Clever's token list and disconnects
those whose token left it; a sync run counts the runs Clever answers 401/403 and
disconnects the district after ``disconnect_after_unauthorized_runs`` of them; a read
that works again reconnects it. Every change is logged in
``district_connection_events`` and alerted.

The DAG file cannot ask the warehouse at parse time, so every change rewrites a small
JSON copy (``config.registry_file()``: slugs, Clever ids, names and statuses, never a
token) that ``config.load_districts_tolerant`` reads: a discovered district gets its DAG
from it, and a disconnected district's DAG stops scheduling.

A disconnected district's data stays as it was, archived nothing, unless its
``disconnect_archive_after_days`` is set: then, that long after the disconnect, the
district health DAG triggers the district's DAG with ``archive_disconnected`` and that
run approves an empty extraction of every endpoint, which archives every record (the
snapshots' usual way). Reconnecting resumes syncing; the first full sync restores what
Clever shares again.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from clever.config import AlertSettings, DistrictConfig, registry_file
from clever.warehouse import ensure_landing_schema

log = logging.getLogger(__name__)

CONNECTED, DISCONNECTED = "connected", "disconnected"
_FILE_LOCK_KEY = 0x0C1E7E21  # one writer of the registry file at a time


class ArchiveRefused(RuntimeError):
    """An ``archive_disconnected`` run of a district that is not disconnected."""


@dataclass(frozen=True)
class ConnectionChange:
    slug: str
    event: str  # onboarded, disconnected, reconnected, archived, disconnect_held
    reason: str | None = None
    name: str | None = None


def upsert_district(conn: psycopg.Connection, district: DistrictConfig) -> dict[str, Any]:
    """The district's row, added (connected) when it has none yet."""
    conn.execute("""INSERT INTO clever_landing.district_connections (district_slug, clever_district_id, name, source)
                    VALUES (%s, %s, %s, %s) ON CONFLICT (district_slug) DO NOTHING""",
                 (district.slug, district.clever_district_id, district.name, district.source))
    return conn.cursor(row_factory=dict_row).execute(
        "SELECT * FROM clever_landing.district_connections WHERE district_slug = %s FOR UPDATE",
        (district.slug,)).fetchone()


def log_event(conn: psycopg.Connection, change: ConnectionChange) -> None:
    conn.execute("INSERT INTO clever_landing.district_connection_events (district_slug, event, reason) "
                 "VALUES (%s, %s, %s)", (change.slug, change.event, change.reason))


def disconnect(conn: psycopg.Connection, slug: str, reason: str) -> ConnectionChange:
    conn.execute("""UPDATE clever_landing.district_connections
                       SET status = 'disconnected', reason = %s, disconnected_at = clock_timestamp(),
                           updated_at = clock_timestamp()
                     WHERE district_slug = %s""", (reason, slug))
    change = ConnectionChange(slug, "disconnected", reason)
    log_event(conn, change)
    return change


def reconnect(conn: psycopg.Connection, slug: str, reason: str) -> ConnectionChange:
    """Connected again: syncing resumes, and a later archive policy starts over."""
    conn.execute("""UPDATE clever_landing.district_connections
                       SET status = 'connected', reason = NULL, connected_at = clock_timestamp(),
                           disconnected_at = NULL, archived_at = NULL, archive_sync_run_id = NULL,
                           unauthorized_runs = 0, updated_at = clock_timestamp()
                     WHERE district_slug = %s""", (slug,))
    change = ConnectionChange(slug, "reconnected", reason)
    log_event(conn, change)
    return change


def record_extraction(conninfo: str, district: DistrictConfig, outcome: str) -> ConnectionChange | None:
    """After a run read Clever (``outcome``: ok, unauthorized or failed): a 401/403 counts
    toward a disconnect, a read that worked resets the count and reconnects a disconnected
    district; another failure changes nothing. Returns the change, if any (alerted)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ensure_landing_schema(conn)
        with conn.transaction():
            row = upsert_district(conn, district)
            change = None
            if outcome == "ok":
                conn.execute("UPDATE clever_landing.district_connections SET unauthorized_runs = 0 "
                             "WHERE district_slug = %s AND unauthorized_runs > 0", (district.slug,))
                if row["status"] == DISCONNECTED:
                    change = reconnect(conn, district.slug, "Clever answered the district's token again")
            elif outcome == "unauthorized":
                (count,) = conn.execute(
                    """UPDATE clever_landing.district_connections
                          SET unauthorized_runs = unauthorized_runs + 1, updated_at = clock_timestamp()
                        WHERE district_slug = %s RETURNING unauthorized_runs""", (district.slug,)).fetchone()
                if row["status"] == CONNECTED and count >= district.disconnect_after_unauthorized_runs:
                    change = disconnect(conn, district.slug, "unauthorized")
        if change is not None:
            write_file(conn)
    if change is not None:
        log.warning("district %s: %s (%s)", district.slug, change.event, change.reason)
        alert_changes([change], {district.slug: district}, district.alerts)
    return change


def connection(conninfo: str, slug: str) -> dict[str, Any] | None:
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        ensure_landing_schema(conn)
        return conn.execute("SELECT * FROM clever_landing.district_connections WHERE district_slug = %s",
                            (slug,)).fetchone()


def check_archive_allowed(conninfo: str, district: DistrictConfig) -> None:
    """An archive run is only for a district that is disconnected: never archive a
    connected district's data by a mistaken trigger."""
    row = connection(conninfo, district.slug)
    if row is None or row["status"] != DISCONNECTED:
        raise ArchiveRefused(
            f"district {district.slug!r}: archive_disconnected refused, the district is "
            f"{'unknown to the registry' if row is None else row['status']}; only a disconnected district's "
            "records are archived this way (docs/OPERATIONS.md#disconnected-districts)")


def mark_archived(conninfo: str, district: DistrictConfig, sync_run_id: int) -> bool:
    """Record (and alert) that the archive run archived the district, when its approval
    covered every endpoint: while Clever pauses the district, the approval defers what
    would archive, and the policy tries again at the next hourly check."""
    change = ConnectionChange(district.slug, "archived", f"sync run {sync_run_id}")
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        (missing,) = conn.execute(
            """SELECT count(*) FROM unnest((SELECT endpoints FROM clever_landing.sync_runs WHERE sync_run_id = %s))
                   AS e(endpoint)
                WHERE NOT EXISTS (SELECT 1 FROM clever_landing.approved_extractions AS a
                                  WHERE a.sync_run_id = %s AND a.endpoint = e.endpoint)""",
            (sync_run_id, sync_run_id)).fetchone()
        if missing:
            log.warning("district %s: archive run %d approved only part of the district (Clever pauses it?); "
                        "not marked archived, the policy tries again", district.slug, sync_run_id)
            return False
        conn.execute("""UPDATE clever_landing.district_connections SET archived_at = clock_timestamp(),
                               archive_sync_run_id = %s, updated_at = clock_timestamp()
                         WHERE district_slug = %s""", (sync_run_id, district.slug))
        log_event(conn, change)
    alert_changes([change], {district.slug: district}, district.alerts)
    return True


def archive_due(conninfo: str, districts: list[DistrictConfig], now: datetime | None = None) -> list[DistrictConfig]:
    """Disconnected districts whose policy archives them now: disconnected at least
    ``disconnect_archive_after_days`` ago and not archived since."""
    now = now or datetime.now(UTC)
    policies = {d.slug: d for d in districts if d.disconnect_archive_after_days is not None}
    if not policies:
        return []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ensure_landing_schema(conn)
        rows = conn.execute("""SELECT district_slug, disconnected_at FROM clever_landing.district_connections
                                WHERE status = 'disconnected' AND archived_at IS NULL
                                  AND district_slug = ANY(%s)""", (list(policies),)).fetchall()
    return [policies[slug] for slug, since in rows
            if since + timedelta(days=policies[slug].disconnect_archive_after_days) <= now]


def write_file(conn: psycopg.Connection, path: Path | None = None) -> Path:
    """Rewrite the parse-time copy from the table, atomically (a parser never reads half a
    file), one writer at a time. ``conn`` is in autocommit, outside any transaction: the
    rows are read under the lock, so no writer overwrites a change it did not see."""
    path = path or registry_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn.execute("SELECT pg_advisory_lock(%s)", (_FILE_LOCK_KEY,))
    try:  # read under the lock (autocommit: every committed change): the last writer has them all
        rows = conn.cursor(row_factory=dict_row).execute(
            """SELECT district_slug AS slug, clever_district_id, name, source, status, reason,
                      disconnected_at::text AS disconnected_at
                 FROM clever_landing.district_connections ORDER BY district_slug""").fetchall()
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False,
                                         encoding="utf-8") as handle:
            json.dump({"written_at": datetime.now(UTC).isoformat(timespec="seconds"), "districts": rows}, handle,
                      indent=1)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, path)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_FILE_LOCK_KEY,))
    return path


_WHAT_IT_MEANS = {
    "onboarded": "Clever lists a new district token for the application. Its DAG {dag} appears at the next DAG "
                 "parse and syncs on the default schedule; its token is stored in Airflow.",
    "disconnected": "The district is disconnected ({reason}): its DAG {dag} stops scheduling and its data is kept "
                    "as it was{policy}. If the district reconnects (or its token is fixed), syncing resumes.",
    "reconnected": "The district is connected again: its DAG {dag} schedules again, and its next full sync "
                   "restores what Clever shares again.",
    "archived": "The disconnect policy archived every record of the district ({reason}); a reconnect restores "
                "them.",
    "disconnect_held": "Discovery would disconnect more districts at once than allowed, so it disconnected none. "
                       "Check the application's Clever dashboard; if they really left, trigger clever_discovery "
                       "with allow_mass_disconnect=true.",
}
_REASONS = {"token_revoked": "its token is no longer in Clever's token list",
            "unauthorized": "Clever answered 401/403 on consecutive runs"}


def describe(change: ConnectionChange, district: DistrictConfig | None) -> tuple[str, str]:
    policy = ""
    if district is not None and district.disconnect_archive_after_days is not None:
        policy = (f" until its policy archives everything {district.disconnect_archive_after_days:g} day(s) after "
                  "the disconnect")
    dag = district.dag_id if district is not None else f"clever_sync_{change.slug}"
    name = change.name or (district.name if district is not None else change.slug)
    subject = f"[clever-warehouse] {change.slug}: {change.event.replace('_', ' ')}"
    body = (f"District {change.slug!r} ({name}): {change.event.replace('_', ' ')}.\n"
            + _WHAT_IT_MEANS[change.event].format(dag=dag, reason=_REASONS.get(change.reason or "", change.reason),
                                                  policy=policy))
    return subject, body


def alert_changes(changes: list[ConnectionChange], districts: dict[str, DistrictConfig],
                  fallback: AlertSettings) -> None:
    """One alert per change, to the district's alert settings (else ``fallback``)."""
    from clever.alerts import Alert, send

    for change in changes:
        district = districts.get(change.slug)
        settings = district.alerts if district is not None and district.alerts.enabled else fallback
        if settings.enabled:
            send(settings, Alert(*describe(change, district)))
