"""Validation of a run's landed records before anything is approved for the snapshots.

Checks the rules a snapshot cannot survive without: every record has a Clever ID and
no ID appears twice in one extraction. A run that breaks them stops here, naming the
district, endpoint and records, and nothing from it is archived.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

from clever.warehouse import completed_endpoints, get_sync_run, landing_table

log = logging.getLogger(__name__)
_EXAMPLES = 5


class ValidationFailed(RuntimeError):
    """A run's data breaks a rule that makes it unsafe to snapshot."""


def validate_run(conninfo: str, sync_run_id: int) -> dict[str, Any]:
    problems: list[str] = []
    checked: dict[str, int] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        run = get_sync_run(conn, sync_run_id)
        for endpoint in sorted(completed_endpoints(conn, sync_run_id)):
            table = landing_table(endpoint)
            missing = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE sync_run_id = %s AND clever_id IS NULL").format(table),
                (sync_run_id,)).fetchone()[0]
            if missing:
                problems.append(f"{endpoint}: {missing} record(s) without an 'id'")
            duplicates = conn.execute(
                sql.SQL("""SELECT clever_id, count(*) FROM {} WHERE sync_run_id = %s AND clever_id IS NOT NULL
                           GROUP BY clever_id HAVING count(*) > 1 ORDER BY clever_id LIMIT %s""").format(table),
                (sync_run_id, _EXAMPLES)).fetchall()
            if duplicates:
                ids = ", ".join(f"{cid} (x{n})" for cid, n in duplicates)
                problems.append(f"{endpoint}: duplicate Clever IDs in one extraction: {ids}")
            checked[endpoint] = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE sync_run_id = %s").format(table), (sync_run_id,)
            ).fetchone()[0]
    if problems:
        raise ValidationFailed(
            f"district {run.district_slug!r}, sync run {sync_run_id}: validation failed; nothing will be "
            "archived: " + "; ".join(problems))
    log.info("district %s, run %d: validated %s", run.district_slug, sync_run_id, checked)
    return {"records_checked": checked}
