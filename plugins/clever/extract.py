"""Extraction: stream one Clever endpoint into its landing table with COPY.

Each page is written with one COPY and committed together with the endpoint's progress
counters, so memory holds one page at most and a crash leaves a consistent, visibly
unfinished endpoint run. An endpoint run is ``completed`` only after its last page; on
any failure it is marked ``failed``, its rows are flagged ``is_partial`` and the error
is re-raised naming the district and endpoint. Rows of earlier runs are never touched,
and re-running the same (run, endpoint) first clears that pair's rows, so an Airflow
task retry is idempotent. An endpoint Clever refuses at once as outside the district's
integration (an sso district's token asking for sections) is ``out_of_scope``, not a
failure (clever.integrations).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from clever import runs
from clever.client import CleverAPIError, CleverClient
from clever.integrations import refused_as_out_of_scope
from clever.runs import SyncRun
from clever.warehouse import landing_table

log = logging.getLogger(__name__)

_COPY_COLUMNS = ("sync_run_id", "district_id", "clever_id", "api_version", "raw", "extracted_at")
# json.dumps writes U+0000 as the escape \u0000 and a literal backslash as \\, so the
# escape is a real NUL only when an even number of backslashes (escaped ones) precede it.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class ExtractionError(RuntimeError):
    """An endpoint could not be extracted completely. Its run is marked failed."""


class BadRecordError(ExtractionError):
    """A record cannot be stored as JSON at all (e.g. a NUL character)."""


@dataclass(frozen=True)
class EndpointResult:
    endpoint: str
    rows: int
    pages: int
    seconds: float
    out_of_scope: bool = False  # Clever refused it as outside the token's scope (an sso district)


def _readable_id(value: Any) -> str | None:
    """The Clever id as landed: a string as sent, a number as its text. A number breaks
    a guaranteed rule and is quarantined, but under its id, so that the record it stands
    for keeps its last clean version instead of counting as gone."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    return None


def _district_of(endpoint: str, record: dict[str, Any]) -> str | None:
    value = record.get("id") if endpoint == "districts" else record.get("district")
    return value if isinstance(value, str) else None


def _unstorable(record: dict[str, Any], run: SyncRun, endpoint: str, page: int, position: int,
                what: str) -> BadRecordError:
    return BadRecordError(
        f"Clever district {run.district_slug!r}, endpoint {endpoint!r}: record "
        f"{record.get('id', '<no id>')!r} (page {page}, item {position}) contains {what}, "
        "which the warehouse cannot store"
    )


def serialise(record: dict[str, Any], run: SyncRun, endpoint: str, page: int, position: int) -> str:
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    # PostgreSQL's jsonb cannot store U+0000; refuse loudly instead of altering data.
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise _unstorable(record, run, endpoint, page, position, "a NUL character")
    return text


def _mark_started(conn: psycopg.Connection, run: SyncRun, endpoint: str) -> None:
    with conn.transaction():
        conn.execute(sql.SQL("DELETE FROM {} WHERE sync_run_id = %s").format(landing_table(endpoint)),
                     (run.sync_run_id,))
        runs.endpoint_started(conn, run.sync_run_id, endpoint)


def _mark_failed(conn: psycopg.Connection, run: SyncRun, endpoint: str, error: str) -> None:
    with conn.transaction():
        conn.execute(sql.SQL("UPDATE {} SET is_partial = true WHERE sync_run_id = %s").format(
            landing_table(endpoint)), (run.sync_run_id,))
        runs.endpoint_failed(conn, run.sync_run_id, endpoint, error)


def _record_failure(conn: psycopg.Connection, run: SyncRun, endpoint: str, error: str) -> None:
    """Best effort: if the warehouse itself is gone, the run stays 'started', which every
    reader treats as incomplete anyway."""
    try:
        _mark_failed(conn, run, endpoint, error)
    except psycopg.Error:
        log.exception("district %s, %s: could not record the failure", run.district_slug, endpoint)


def _refresh_statistics(conn: psycopg.Connection, run: SyncRun, endpoint: str) -> None:
    """ANALYZE the landing table now (a sample, so quick at any size) instead of waiting for
    autovacuum: validation, the guard and dbt plan their joins on these row counts, and
    plans made for an empty table are very slow on a million rows."""
    try:
        conn.execute(sql.SQL("ANALYZE {}").format(landing_table(endpoint)))
    except psycopg.Error:
        log.warning("district %s, %s: could not refresh table statistics", run.district_slug, endpoint,
                    exc_info=True)


def _out_of_scope(conn: psycopg.Connection, run: SyncRun, endpoint: str, refusal: CleverAPIError,
                  seconds: float) -> EndpointResult:
    """An endpoint the district's integration cannot read, refused before any page: not a
    failure, and nothing of it is approved or archived (clever.integrations)."""
    reason = (f"out of scope: Clever refused {endpoint!r} to this {run.integration} district's token "
              f"(HTTP {refusal.status}); it was not read and nothing of it is approved or archived")
    with conn.transaction():
        runs.endpoint_out_of_scope(conn, run.sync_run_id, endpoint, reason)
    log.warning("district %s, %s: %s", run.district_slug, endpoint, reason)
    return EndpointResult(endpoint, 0, 0, seconds, out_of_scope=True)


class ExtractionStopped(ExtractionError):
    """The task stopped the extraction (its time limit): the endpoint is failed, not finished."""


def extract_endpoint(conn: psycopg.Connection, client: CleverClient, run: SyncRun, endpoint: str,
                     stop: threading.Event | None = None) -> EndpointResult:
    """Land every record of ``endpoint`` for ``run``; raise ExtractionError on failure.
    ``stop``, once set, ends it after the page being landed (failed, like any failure)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        # Each page commits on its own; a caller's open transaction would swallow that.
        raise ValueError("extract_endpoint needs a connection with no transaction open (use autocommit)")
    started = time.monotonic()
    _mark_started(conn, run, endpoint)
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
        landing_table(endpoint), sql.SQL(", ").join(map(sql.Identifier, _COPY_COLUMNS))
    )
    rows = pages = 0
    try:
        for page in client.iter_pages(endpoint):
            if stop is not None and stop.is_set():
                raise ExtractionStopped(f"Clever district {run.district_slug!r}, endpoint {endpoint!r}: stopped "
                                        f"after {pages} page(s) (the task was stopped, e.g. by its time limit)")
            extracted_at = datetime.now(UTC)
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(copy_sql) as copy:
                    for position, record in enumerate(page.records, start=1):
                        row = (run.sync_run_id, _district_of(endpoint, record),
                               _readable_id(record.get("id")), run.api_version,
                               serialise(record, run, endpoint, page.number, position), extracted_at)
                        try:
                            copy.write_row(row)
                        except UnicodeEncodeError:  # a lone UTF-16 surrogate (a "\ud800" escape)
                            raise _unstorable(record, run, endpoint, page.number, position,
                                              "an invalid Unicode character (a lone UTF-16 surrogate)") from None
                runs.page_landed(cur, run.sync_run_id, endpoint, len(page.records))
            rows += len(page.records)
            pages += 1
            log.info("district %s, %s: page %d landed (%d rows so far)", run.district_slug, endpoint, pages, rows)
    except (CleverAPIError, BadRecordError, ExtractionStopped, psycopg.Error) as exc:
        if isinstance(exc, CleverAPIError) and pages == 0 and refused_as_out_of_scope(run.integration, endpoint,
                                                                                       exc.status):
            return _out_of_scope(conn, run, endpoint, exc, time.monotonic() - started)
        message = str(exc) if not isinstance(exc, psycopg.Error) else (
            f"Clever district {run.district_slug!r}, endpoint {endpoint!r}: warehouse error: {exc}")
        _record_failure(conn, run, endpoint, message)
        raise ExtractionError(message) from exc
    except BaseException as exc:  # interrupted (e.g. task killed): leave an honest trail
        _record_failure(conn, run, endpoint, f"interrupted: {type(exc).__name__}: {exc}")
        raise
    with conn.transaction():
        runs.endpoint_completed(conn, run.sync_run_id, endpoint)
    _refresh_statistics(conn, run, endpoint)
    seconds = time.monotonic() - started
    log.info("district %s, %s: completed, %d rows in %d pages (%.1fs)",
             run.district_slug, endpoint, rows, pages, seconds)
    return EndpointResult(endpoint, rows, pages, seconds)
