"""District health: which districts have no fresh data, and the alert that says so.

A district is stale when its latest approved extraction is older than its schedule's
longest gap plus a margin (36 h for @daily; ``stale_after_hours`` overrides it; a
district synced only by hand is never stale), or when it never had one. The
``clever_district_health`` DAG checks every configured district hourly and alerts each
stale one at most once per limit period; ``clever_reports.rpt_district_health`` shows
the same to BI.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from clever.config import DistrictConfig
from clever.warehouse import ensure_landing_schema

log = logging.getLogger(__name__)

_LAST = """
SELECT (SELECT max(approved_at) FROM clever_landing.approved_extractions WHERE district_slug = %(d)s),
       (SELECT stale_alerted_at FROM clever_landing.district_settings WHERE district_slug = %(d)s),
       (SELECT concat_ws(' ', 'run', r.sync_run_id, 'started', to_char(r.started_at AT TIME ZONE 'UTC',
                         'YYYY-MM-DD HH24:MI "UTC"'), coalesce(s.status, CASE r.status WHEN 'failed' THEN 'failed'
                         ELSE 'running' END))
          FROM clever_landing.sync_runs AS r LEFT JOIN clever_landing.run_summaries AS s USING (sync_run_id)
         WHERE r.district_slug = %(d)s ORDER BY r.sync_run_id DESC LIMIT 1)
"""


@dataclass(frozen=True)
class Freshness:
    slug: str
    limit_hours: float | None
    hours_since_approval: float | None  # None: never approved
    last_run: str | None
    alerted_at: datetime | None

    @property
    def stale(self) -> bool:
        if self.limit_hours is None:
            return False
        return self.hours_since_approval is None or self.hours_since_approval > self.limit_hours


def freshness(conn: psycopg.Connection, district: DistrictConfig, now: datetime) -> Freshness:
    approved_at, alerted_at, last_run = conn.execute(_LAST, {"d": district.slug}).fetchone()
    hours = None if approved_at is None else (now - approved_at).total_seconds() / 3600
    return Freshness(district.slug, district.stale_limit_hours(), hours, last_run, alerted_at)


def check_districts(conninfo: str, districts: list[DistrictConfig], now: datetime | None = None) -> list[Freshness]:
    """Every district's freshness; alert each stale one (with alerts configured) unless it
    was alerted within its limit. Returns the stale ones."""
    from clever.alerts import send, stale_alert

    now = now or datetime.now(UTC)
    stale = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ensure_landing_schema(conn)
        for district in districts:
            state = freshness(conn, district, now)
            if not state.stale:
                continue
            stale.append(state)
            log.warning("district %s: stale, no approved extraction %s (limit %s h)", district.slug,
                        "ever" if state.hours_since_approval is None else f"for {state.hours_since_approval:.0f} h",
                        state.limit_hours)
            recently = state.alerted_at is not None and (now - state.alerted_at).total_seconds() / 3600 < (
                state.limit_hours or 0)
            if not district.alerts.enabled or recently:
                continue
            if not send(district.alerts, stale_alert(district, state.hours_since_approval, state.limit_hours,
                                                     state.last_run)):
                conn.execute("""INSERT INTO clever_landing.district_settings (district_slug, stale_after_hours,
                                    stale_alerted_at) VALUES (%s, %s, %s) ON CONFLICT (district_slug)
                                DO UPDATE SET stale_alerted_at = EXCLUDED.stale_alerted_at""",
                             (district.slug, state.limit_hours, now))
    return stale
