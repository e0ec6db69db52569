"""The run summary: what a sync run landed, validated, quarantined, held, approved and
changed in the history, written to ``clever_landing.run_summaries`` by the last step of
every run (a failed one too), printed in its log, read by alerts, ``make sync`` and BI
(``clever_reports.rpt_sync_runs``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from clever.catalog import SNAPSHOT_SCHEMA, SNAPSHOTTED
from clever.warehouse import ensure_landing_schema


def history_changes(conn: psycopg.Connection, district_slug: str, since: datetime) -> dict[str, dict[str, int]]:
    """Per data type: versions written since ``since`` for a district, by kind (added: no
    earlier version; restored: the previous version was an archive row)."""
    changes: dict[str, dict[str, int]] = {}
    for snapshotted in SNAPSHOTTED:
        data_type, snapshot, keys = snapshotted.name, snapshotted.snapshot, snapshotted.key
        exists = conn.execute("SELECT to_regclass(%s)", (snapshotted.snapshot_relation,)).fetchone()[0]
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


def sync_mode(conn: psycopg.Connection, sync_run_id: int, district_slug: str,
              changes: dict[str, dict[str, int]] | None) -> dict[str, Any]:
    """How the run read Clever: ``mode`` (full or events) and why; for an events run the
    cursors and what it changed; for a built full sync that follows events runs, the
    ``reconciliation``: what it changed in the history is where the events had missed
    something (the full sync wins)."""
    from clever.events import applied_counts

    mode, reason, events_from, events_to = conn.execute(
        "SELECT mode, mode_reason, events_from, events_to FROM clever_landing.sync_runs WHERE sync_run_id = %s",
        (sync_run_id,)).fetchone()
    result: dict[str, Any] = {"mode": mode, "mode_reason": reason}
    if mode == "events":
        result["events"] = {"after": events_from, "through": events_to, "changes": applied_counts(conn, sync_run_id)}
        return result
    previous = conn.execute(
        """SELECT r.sync_run_id FROM clever_landing.approved_extractions AS a
           JOIN clever_landing.sync_runs AS r ON r.sync_run_id = a.sync_run_id
           WHERE a.district_slug = %s AND a.sync_run_id < %s ORDER BY a.sync_run_id DESC LIMIT 1""",
        (district_slug, sync_run_id)).fetchone()
    if changes is not None and previous is not None and \
            conn.execute("SELECT mode FROM clever_landing.sync_runs WHERE sync_run_id = %s", previous).fetchone()[0] \
            == "events":
        differences = {data_type: {k: v for k, v in counts.items() if k != "history_rows" and v}
                       for data_type, counts in changes.items() if counts.get("history_rows")}
        result["reconciliation"] = {"after_events_run": previous[0], "differences": differences}
    return result


def summarize(conninfo: str, sync_run_id: int, build_started_at: float | None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write and return the run summary (landed rows, history changes, durations)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ensure_landing_schema(conn)
        run = conn.execute(
            "SELECT district_slug, api_version, status, error, started_at, finished_at, integration "
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
            "sync_run_id": sync_run_id, "district": run[0], "api_version": run[1], "integration": run[6],
            **sync_mode(conn, sync_run_id, run[0], changes if build_started_at is not None else None),
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
    integration = summary.get("integration", "secure_sync")
    lines = [f"Clever sync run {summary['sync_run_id']} for district {summary['district']!r} "
             f"({summary['api_version']}, {'' if integration == 'secure_sync' else integration + ', '}"
             f"{summary.get('mode', 'full')}): extraction {summary['extraction_status']}"]
    if summary.get("mode_reason"):
        lines.append(f"  {summary.get('mode', 'full')} sync: {summary['mode_reason']}")
    if summary.get("events"):
        events = summary["events"]
        lines.append(f"  events after {events['after'] or '(the first)'} through {events['through'] or '(none new)'}: "
                     + (", ".join(f"{endpoint} " + " ".join(f"{n} {action}" for action, n in counts.items())
                                  for endpoint, counts in events["changes"].items()) or "no changes"))
    if "reconciliation" in summary:
        differences = summary["reconciliation"]["differences"]
        lines.append(f"  reconciliation with events (up to run {summary['reconciliation']['after_events_run']}): "
                     + ("; ".join(f"{data_type} " + ", ".join(f"{n} {kind}" for kind, n in counts.items())
                                  for data_type, counts in differences.items())
                        + " (the full sync's data wins)" if differences else "no differences"))
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
