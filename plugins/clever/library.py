"""Clever Library districts: the union of the connected teachers' views, landed as one extraction.

A Library app has no district token. Teachers connect it themselves ("Log in with
Clever"); the application records each one in ``app.library_teachers`` and hands the
teacher's bearer token to Airflow (the Variable ``clever_teacher_access_token_<teacher
id>``, docs/OPERATIONS.md#library-teachers). A district of ``integration: library`` is
synced by its usual DAG; its extraction reads, teacher by teacher:

- ``GET /me`` (the token must be that teacher's), ``/users/{id}`` (the teacher),
  ``/districts/{id}`` (once per run),
- ``/users/{id}/sections`` and ``/users/{id}/mystudents``, page by page,

and lands them with COPY into the same landing tables as a Secure Sync extraction of
districts, users and sections, so validation, the guard, approval, the snapshots and
the marts work unchanged. A record reached through two teachers (a shared student, a
co-taught section) is landed once: each page goes through a temporary table and only
ids the run has not landed yet are inserted. Which records each teacher's view held is
kept in ``clever_landing.library_views``; a teacher's view lands whole or not at all
(one transaction per teacher, a few hundred records).

A record that leaves every view is not landed, so the snapshots archive it, and restore
it when a view holds it again. A teacher whose token Clever refuses (401/403), or whom
the application marked disconnected, is disconnected (``library_teacher_status``,
alerted) and never fails the others; by default the teacher's last view is carried into
the run (copied from the district's current extraction), so nothing is archived by the
disconnect. With ``library_teacher_archive_after_days`` set, that long after the
disconnect the view is no longer carried: what only that teacher's view held is archived
(what another teacher still sees stays). Any other failure reading a teacher fails the
extraction, as for any endpoint: nothing is approved or archived.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from clever import runs
from clever.client import CleverAPIError, CleverAuthError, CleverClient
from clever.config import DistrictConfig
from clever.connections import teacher_token_variable
from clever.extract import (
    BadRecordError,
    ExtractionError,
    _district_of,
    _mark_started,
    _readable_id,
    _record_failure,
    _refresh_statistics,
    serialise,
)
from clever.runs import SyncRun, close_extraction, get_sync_run
from clever.warehouse import ensure_landing_schema, landing_table

log = logging.getLogger(__name__)

CONNECTED, DISCONNECTED = "connected", "disconnected"
# The endpoints a teacher's view fills (districts: the teacher's district record).
VIEW_ENDPOINTS = ("districts", "users", "sections")

_DDL = """
-- Per Library teacher: the pipeline's view of the connection (the application's is
-- app.library_teachers): disconnected when Clever refuses the teacher's token or the
-- application marks it, with why and when; archived_at when the disconnect policy
-- stopped carrying the teacher's last view.
CREATE TABLE IF NOT EXISTS clever_landing.library_teacher_status (
    district_slug      text        NOT NULL,
    teacher_clever_id  text        NOT NULL,
    status             text        NOT NULL CHECK (status IN ('connected', 'disconnected')),
    reason             text,
    disconnected_at    timestamptz,
    archived_at        timestamptz,
    last_read_run_id   bigint,
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (district_slug, teacher_clever_id)
);
-- Which records each teacher's view held in a run (carried: copied from the district's
-- previous extraction for a disconnected teacher). Rows of runs older than the district's
-- current extraction are deleted by the next run.
CREATE TABLE IF NOT EXISTS clever_landing.library_views (
    sync_run_id        bigint  NOT NULL REFERENCES clever_landing.sync_runs ON DELETE CASCADE,
    teacher_clever_id  text    NOT NULL,
    endpoint           text    NOT NULL,
    clever_id          text    NOT NULL,
    carried            boolean NOT NULL DEFAULT false,
    PRIMARY KEY (sync_run_id, teacher_clever_id, endpoint, clever_id)
);
"""
_DDL_LOCK_KEY = 0x0C1E7E31


def ensure_library_schema(conn: psycopg.Connection) -> None:
    ensure_landing_schema(conn)  # with schema app and app.library_teachers
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        conn.execute(_DDL)


@dataclass(frozen=True)
class TeacherChange:
    teacher: str
    event: str  # disconnected, reconnected, archived
    reason: str | None = None


@dataclass
class LibraryResult:
    read: list[str] = field(default_factory=list)  # teachers whose view was read this run
    kept: list[str] = field(default_factory=list)  # disconnected teachers whose last view was carried
    archived: list[str] = field(default_factory=list)  # disconnected teachers whose view is no longer carried
    changes: list[TeacherChange] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # landed per endpoint (each record once)

    def as_dict(self) -> dict[str, Any]:
        return {"teachers_read": self.read, "teachers_kept": self.kept, "teachers_archived": self.archived,
                "teacher_changes": [f"{c.teacher}: {c.event}" + (f" ({c.reason})" if c.reason else "")
                                    for c in self.changes],
                "rows": self.rows}


class _Lander:
    """Lands a run's records once each, remembering which teacher's view held them."""

    def __init__(self, conn: psycopg.Connection, run: SyncRun):
        self.conn, self.run = conn, run
        self.rows = dict.fromkeys(run.endpoints, 0)
        self.pages = 0
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS library_page (clever_id text, district_id text, raw jsonb, "
                     "extracted_at timestamptz)")

    def land(self, teacher: str, endpoint: str, records: list[dict[str, Any]]) -> None:
        """One page of a teacher's view (inside the teacher's transaction)."""
        if endpoint not in self.rows:
            return
        self.pages += 1
        extracted_at = datetime.now(UTC)
        with self.conn.cursor() as cur:
            cur.execute("TRUNCATE pg_temp.library_page")
            with cur.copy("COPY pg_temp.library_page (clever_id, district_id, raw, extracted_at) FROM STDIN") as copy:
                for position, record in enumerate(records, start=1):
                    try:
                        copy.write_row((_readable_id(record.get("id")), _district_of(endpoint, record),
                                        serialise(record, self.run, endpoint, self.pages, position), extracted_at))
                    except UnicodeEncodeError:
                        raise BadRecordError(
                            f"Clever district {self.run.district_slug!r}, endpoint {endpoint!r}: record "
                            f"{record.get('id', '<no id>')!r} of teacher {teacher}'s view contains an invalid "
                            "Unicode character (a lone UTF-16 surrogate), which the warehouse cannot store") from None
            # Only ids the run has not landed yet: a student of two teachers is one record.
            cur.execute(sql.SQL(
                """INSERT INTO {landing} (sync_run_id, district_id, clever_id, api_version, raw, extracted_at)
                   SELECT %(run)s, p.district_id, p.clever_id, %(version)s, p.raw, p.extracted_at
                   FROM pg_temp.library_page AS p
                   WHERE NOT EXISTS (SELECT 1 FROM {landing} AS l
                                     WHERE l.sync_run_id = %(run)s AND l.clever_id = p.clever_id)""").format(
                landing=landing_table(endpoint)), {"run": self.run.sync_run_id, "version": self.run.api_version})
            inserted = cur.rowcount
            cur.execute("""INSERT INTO clever_landing.library_views
                               (sync_run_id, teacher_clever_id, endpoint, clever_id)
                           SELECT %s, %s, %s, clever_id FROM pg_temp.library_page WHERE clever_id IS NOT NULL
                           ON CONFLICT DO NOTHING""", (self.run.sync_run_id, teacher, endpoint))
            runs.page_landed(cur, self.run.sync_run_id, endpoint, inserted)
        self.rows[endpoint] += inserted

    def carry(self, teacher: str, previous: dict[str, int]) -> None:
        """A disconnected teacher's last view, from the district's current extraction: the
        records no other view landed this run, copied as they were."""
        for endpoint, previous_run in previous.items():
            if endpoint not in self.rows or endpoint == "districts":
                continue
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute("""INSERT INTO clever_landing.library_views
                                   (sync_run_id, teacher_clever_id, endpoint, clever_id, carried)
                               SELECT %s, teacher_clever_id, endpoint, clever_id, true
                               FROM clever_landing.library_views
                               WHERE sync_run_id = %s AND teacher_clever_id = %s AND endpoint = %s
                               ON CONFLICT DO NOTHING""", (self.run.sync_run_id, previous_run, teacher, endpoint))
                self._copy_previous(cur, endpoint, previous_run, sql.SQL(
                    "JOIN clever_landing.library_views AS v ON v.sync_run_id = p.sync_run_id "
                    "AND v.clever_id = p.clever_id AND v.endpoint = {} AND v.teacher_clever_id = {}").format(
                    sql.Literal(endpoint), sql.Literal(teacher)))

    def carry_district(self, previous: dict[str, int]) -> None:
        """No view read the district record this run (no teacher could be read): keep it."""
        if "districts" in self.rows and "districts" in previous and not self.rows["districts"]:
            with self.conn.transaction(), self.conn.cursor() as cur:
                self._copy_previous(cur, "districts", previous["districts"], sql.SQL(""))

    def _copy_previous(self, cur: psycopg.Cursor, endpoint: str, previous_run: int, join: sql.Composable) -> None:
        cur.execute(sql.SQL(
            """INSERT INTO {landing} (sync_run_id, district_id, clever_id, api_version, raw, extracted_at)
               SELECT DISTINCT ON (p.clever_id) %(run)s, p.district_id, p.clever_id, p.api_version, p.raw,
                      p.extracted_at
               FROM {landing} AS p {join}
               WHERE p.sync_run_id = %(previous)s AND p.clever_id IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM {landing} AS l
                                 WHERE l.sync_run_id = %(run)s AND l.clever_id = p.clever_id)
               ORDER BY p.clever_id""").format(landing=landing_table(endpoint), join=join),
            {"run": self.run.sync_run_id, "previous": previous_run})
        runs.page_landed(cur, self.run.sync_run_id, endpoint, cur.rowcount)
        self.rows[endpoint] += cur.rowcount


def _read_teacher(client: CleverClient, lander: _Lander, teacher: str, district_landed: bool,
                  expected_district: str | None) -> str | None:
    """Land one teacher's view; returns the teacher's district id. Raises CleverAuthError
    when the token is refused, is not this teacher's, or the teacher is in another Clever
    district than the Library district's (its ``clever_district_id``, else its first teacher's):
    one district's records never land under another's slug."""
    me = client.get_me()
    data = me["data"]
    if data.get("id") != teacher or (me.get("type") or data.get("type")) != "teacher":
        raise CleverAuthError(client.district, "me", f"the token stored for teacher {teacher} belongs to "
                              f"another user ({me.get('type') or data.get('type')!s}); store this teacher's own token")
    district_id = data.get("district")
    if expected_district is not None and district_id != expected_district:
        raise CleverAuthError(client.district, "me", f"teacher {teacher} is in Clever district {district_id!s}, not "
                              f"this Library district's ({expected_district}); record the teacher under the entry of "
                              "their own district")
    lander.land(teacher, "users", [client.get_record("users", teacher)])
    if not district_landed and isinstance(district_id, str):
        lander.land(teacher, "districts", [client.get_record("districts", district_id)])
    for page in client.iter_pages(f"users/{teacher}/sections"):
        lander.land(teacher, "sections", page.records)
    for page in client.iter_pages(f"users/{teacher}/mystudents"):
        lander.land(teacher, "users", page.records)
    return district_id if isinstance(district_id, str) else None


def _set_status(conn: psycopg.Connection, district: str, teacher: str, status: str, reason: str | None,
                run_id: int | None = None) -> TeacherChange | None:
    """Record the teacher's status; returns the change if it changed."""
    row = conn.execute("""SELECT status FROM clever_landing.library_teacher_status
                          WHERE district_slug = %s AND teacher_clever_id = %s FOR UPDATE""",
                       (district, teacher)).fetchone()
    if status == CONNECTED:
        conn.execute("""INSERT INTO clever_landing.library_teacher_status AS s
                            (district_slug, teacher_clever_id, status, last_read_run_id)
                        VALUES (%s, %s, 'connected', %s)
                        ON CONFLICT (district_slug, teacher_clever_id) DO UPDATE
                        SET status = 'connected', reason = NULL, disconnected_at = NULL, archived_at = NULL,
                            last_read_run_id = EXCLUDED.last_read_run_id, updated_at = clock_timestamp()""",
                     (district, teacher, run_id))
        return TeacherChange(teacher, "reconnected") if row and row[0] == DISCONNECTED else None
    if row and row[0] == DISCONNECTED:
        return None
    conn.execute("""INSERT INTO clever_landing.library_teacher_status AS s
                        (district_slug, teacher_clever_id, status, reason, disconnected_at)
                    VALUES (%s, %s, 'disconnected', %s, clock_timestamp())
                    ON CONFLICT (district_slug, teacher_clever_id) DO UPDATE
                    SET status = 'disconnected', reason = EXCLUDED.reason, disconnected_at = clock_timestamp(),
                        updated_at = clock_timestamp()""", (district, teacher, reason))
    return TeacherChange(teacher, "disconnected", reason)


def _archive_due(conn: psycopg.Connection, district: DistrictConfig, teacher: str, now: datetime) -> bool:
    """Whether the disconnect policy stops carrying the teacher's last view now."""
    days = district.library_teacher_archive_after_days
    if days is None:
        return False
    (since,) = conn.execute("""SELECT disconnected_at FROM clever_landing.library_teacher_status
                               WHERE district_slug = %s AND teacher_clever_id = %s""",
                            (district.slug, teacher)).fetchone()
    return since is not None and since + timedelta(days=days) <= now


def _previous_extractions(conn: psycopg.Connection, district_slug: str) -> dict[str, int]:
    return dict(conn.execute("""SELECT endpoint, sync_run_id FROM clever_landing.current_extractions
                                WHERE district_slug = %s AND endpoint = ANY(%s)""",
                             (district_slug, list(VIEW_ENDPOINTS))).fetchall())


def extract_run(conninfo: str, district: DistrictConfig, sync_run_id: int, base_url: str,
                token_of: Callable[[str], str | None], now: datetime | None = None) -> dict[str, Any]:
    """Land the union of the district's teachers' views for the run (see the module doc),
    then close the extraction. ``token_of(teacher id)``: the teacher's token, or None."""
    now = now or datetime.now(UTC)
    result = LibraryResult()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ensure_library_schema(conn)
        run = get_sync_run(conn, sync_run_id)
        unreadable = [e for e in run.endpoints if e not in VIEW_ENDPOINTS]
        if unreadable:  # landed empty, they would archive every such record the district had
            raise ExtractionError(f"Clever district {district.slug!r}: a Library district's teachers cannot read "
                                  f"{', '.join(unreadable)}; sync only {', '.join(VIEW_ENDPOINTS)}")
        for endpoint in run.endpoints:
            _mark_started(conn, run, endpoint)  # a retry starts the run's extraction over
        conn.execute("DELETE FROM clever_landing.library_views WHERE sync_run_id = %s", (sync_run_id,))
        teachers = conn.execute("""SELECT teacher_clever_id, disconnected_at IS NOT NULL FROM app.library_teachers
                                   WHERE district_slug = %s ORDER BY teacher_clever_id""",
                                (district.slug,)).fetchall()
        # Teachers the pipeline knew who are gone from the application's table are disconnected too.
        known = {t for (t,) in conn.execute("SELECT teacher_clever_id FROM clever_landing.library_teacher_status "
                                            "WHERE district_slug = %s", (district.slug,)).fetchall()}
        listed = {t for t, _ in teachers}
        teachers += [(t, True) for t in sorted(known - listed)]
        previous = _previous_extractions(conn, district.slug)
        lander = _Lander(conn, run)
        landed_district: str | None = None  # the Clever district of the first teacher read
        disconnected: list[str] = []
        try:
            for teacher, app_disconnected in teachers:
                reason = None
                if app_disconnected:
                    reason = "the application marked the teacher disconnected (app.library_teachers)"
                elif not (token := token_of(teacher)):
                    reason = f"no token stored for the teacher (Airflow Variable {teacher_token_variable(teacher)})"
                else:
                    try:
                        with conn.transaction(), CleverClient(
                                base_url, token, district=f"{district.slug} (Library teacher {teacher})",
                                api_version=district.api_version, page_size=district.page_size,
                                max_attempts=district.http_max_attempts,
                                backoff_max=district.http_backoff_max_seconds,
                                page_timeout=district.http_page_timeout_seconds) as client:
                            read = _read_teacher(client, lander, teacher, landed_district is not None,
                                                 district.clever_district_id or landed_district)
                            landed_district = landed_district or read
                    except CleverAuthError as exc:
                        lander.rows = _landed_counts(conn, run)  # the teacher's transaction was rolled back
                        reason = f"Clever refused the teacher's token (HTTP {exc.status})" if exc.status else str(exc)
                if reason is None:
                    with conn.transaction():
                        change = _set_status(conn, district.slug, teacher, CONNECTED, None, sync_run_id)
                    result.read.append(teacher)
                else:
                    with conn.transaction():
                        change = _set_status(conn, district.slug, teacher, DISCONNECTED, reason)
                    disconnected.append(teacher)
                    log.warning("district %s: Library teacher %s is disconnected: %s", district.slug, teacher, reason)
                if change is not None:
                    result.changes.append(change)
            for teacher in disconnected:
                if _archive_due(conn, district, teacher, now):
                    with conn.transaction():
                        archived = conn.execute(
                            """UPDATE clever_landing.library_teacher_status SET archived_at = clock_timestamp()
                               WHERE district_slug = %s AND teacher_clever_id = %s AND archived_at IS NULL
                               RETURNING 1""", (district.slug, teacher)).fetchone()
                    if archived:
                        result.changes.append(TeacherChange(
                            teacher, "archived", f"disconnected over {district.library_teacher_archive_after_days:g} "
                            "day(s) ago: what only this teacher's view held is archived"))
                    result.archived.append(teacher)
                else:
                    lander.carry(teacher, previous)
                    result.kept.append(teacher)
            lander.carry_district(previous)
        except (CleverAPIError, BadRecordError, psycopg.Error) as exc:
            message = (str(exc) if not isinstance(exc, psycopg.Error) else
                       f"Clever district {district.slug!r}, Library extraction: warehouse error: {exc}")
            for endpoint in run.endpoints:
                _record_failure(conn, run, endpoint, message)
            alert_teacher_changes(district, result.changes)
            raise ExtractionError(message) from exc
        except BaseException as exc:  # interrupted (e.g. task killed): leave an honest trail
            for endpoint in run.endpoints:
                _record_failure(conn, run, endpoint, f"interrupted: {type(exc).__name__}: {exc}")
            raise
        with conn.transaction():
            for endpoint in run.endpoints:
                runs.endpoint_completed(conn, sync_run_id, endpoint)
        for endpoint in run.endpoints:
            _refresh_statistics(conn, run, endpoint)
        result.rows = _landed_counts(conn, run)
        # Views of runs before the current extraction are read by no one any more.
        if previous:
            conn.execute("""DELETE FROM clever_landing.library_views AS v USING clever_landing.sync_runs AS r
                            WHERE r.sync_run_id = v.sync_run_id AND r.district_slug = %s AND v.sync_run_id < %s""",
                         (district.slug, min(previous.values())))
    close_extraction(conninfo, sync_run_id)
    alert_teacher_changes(district, result.changes)
    log.info("district %s, run %d: Library views of %d teacher(s) read, %d kept, %d archived; landed %s",
             district.slug, sync_run_id, len(result.read), len(result.kept), len(result.archived), result.rows)
    return result.as_dict()


def _landed_counts(conn: psycopg.Connection, run: SyncRun) -> dict[str, int]:
    return dict(conn.execute("SELECT endpoint, row_count FROM clever_landing.endpoint_runs WHERE sync_run_id = %s",
                             (run.sync_run_id,)).fetchall())


_WHAT_IT_MEANS = {
    "disconnected": "Teacher {teacher} of Library district {slug!r} is disconnected: {reason}. The other teachers "
                    "sync as before. {policy} If the teacher connects again (a new token handed over), the next "
                    "sync reads their view again and restores anything archived.",
    "reconnected": "Teacher {teacher} of Library district {slug!r} is connected again: their view is read from "
                   "this sync on, and anything of it archived is restored.",
    "archived": "Teacher {teacher} of Library district {slug!r}: {reason}. Students and sections another connected "
                "teacher still sees stay active.",
}


def alert_teacher_changes(district: DistrictConfig, changes: Iterable[TeacherChange]) -> None:
    from clever.alerts import Alert, send

    if not district.alerts.enabled:
        return
    days = district.library_teacher_archive_after_days
    policy = ("Their last view is kept (nothing is archived by the disconnect)." if days is None else
              f"Their last view is kept for {days:g} day(s), then what only they saw is archived.")
    for change in changes:
        send(district.alerts, Alert(
            f"[clever-warehouse] {district.slug}: Library teacher {change.teacher} {change.event}",
            _WHAT_IT_MEANS[change.event].format(teacher=change.teacher, slug=district.slug, reason=change.reason,
                                                policy=policy)))
