"""Alerts to the people on call: a failed run, a guard hold, a stale district.

Sent through Airflow: the sync DAG's ``summarize`` task (which fails whenever the run
failed) has ``SyncFailedNotifier`` as its failure callback, and the district health DAG
sends stale-district alerts. Each goes by email (an Airflow SMTP connection, through the
SMTP provider's hook) and/or to a webhook (an Airflow HTTP connection whose host is the
URL; Slack-compatible ``{"text": ...}``), as the district's ``alerts`` settings say.

An alert is built from counts and names only (district, run, step, data types, rows,
guard counts, rule names), never from error text or records: an error can quote Clever's
response, and a record holds a student's data. Tokens are never read here.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

from clever.config import AlertSettings, DistrictConfig

log = logging.getLogger(__name__)

WHAT_TO_DO = {
    "extract": "Clever could not be read. A 401/403 means the district's token was revoked or expired: update the "
               "Airflow connection {conn} (OPERATIONS.md, 'Auth failure'). Otherwise check Clever's status and the "
               "extract task log, then trigger the DAG again; nothing was archived.",
    "validate": "Too many records broke a guaranteed rule and were quarantined (clever_landing.quarantine for this "
                "run). Ask the district to fix them in its SIS or Clever; the next sync checks them again. Nothing "
                "was archived.",
    "guard": "The mass-archive guard held the run: it would archive or change more of a data type than the "
             "district's limits (Clever's own review holds at 10% and 75%). Confirm with the district that Clever "
             "really stopped sharing or changed these records, then trigger the DAG with allow_mass_archive=true "
             "(OPERATIONS.md, 'Mass-archive guard'). Nothing was archived.",
    "approve": "The approval failed (see the approve task log); nothing was archived.",
    "build": "The dbt build failed after the run was approved: see the build task log and "
             ".local/artifacts/dbt_builds/{slug}/dbt.log. The district's next successful build applies this run.",
    "abandoned": "The run was killed before it finished; nothing from it was archived. Check the worker, then "
                 "trigger the DAG again.",
    "unknown": "See the failed task's log in Airflow.",
}


@dataclass(frozen=True)
class Alert:
    subject: str
    body: str


def failed_step(summary: dict[str, Any]) -> str:
    """Where a failed run stopped, as rpt_sync_runs classifies it (from the error's prefix,
    which is ours: 'incomplete endpoints', '<step>: ...'); a guard trip is 'guard'."""
    if any(check.get("tripped") and not check.get("overridden") for check in (summary.get("guard") or {}).values()):
        return "guard"
    error = summary.get("error") or ""
    if error.startswith("incomplete endpoints"):
        return "extract"
    step = error.split(":", 1)[0]
    return step if step in WHAT_TO_DO else "unknown"


def run_failed_alert(district: DistrictConfig, summary: dict[str, Any]) -> Alert:
    """The alert for a failed run, from its run summary (counts and names only)."""
    step = failed_step(summary)
    lines = [f"Clever sync of district {district.slug!r} ({district.name}) FAILED at {step}.",
             f"Sync run {summary['sync_run_id']}, Clever API {summary.get('api_version')}, "
             f"extraction {summary.get('extraction_status')}."]
    for endpoint, info in (summary.get("endpoints") or {}).items():
        lines.append(f"  {endpoint}: {info['status']}, {info['rows']} rows")
    for data_type, check in (summary.get("guard") or {}).items():
        if check.get("tripped"):
            holds = ", ".join(check.get("holds") or ["archive"])
            lines.append(f"  guard ({holds}): {data_type} would archive {check['would_archive']} of "
                         f"{check['active_before']} (limit {check['limit']}), would change "
                         f"{check.get('would_change')} (limit {check.get('change_limit')})")
    quarantined = summary.get("quarantined") or {}
    if quarantined:
        lines.append(f"  quarantined: {sum(quarantined.values())} record(s) breaking {len(quarantined)} rule(s): "
                     + "; ".join(sorted(quarantined)))
    lines.append("What to do: " + WHAT_TO_DO[step].format(conn=district.connection_id, slug=district.slug))
    return Alert(f"[clever-warehouse] {district.slug}: sync run {summary['sync_run_id']} failed at {step}",
                 "\n".join(lines))


def stale_alert(district: DistrictConfig, hours_since: float | None, limit_hours: float,
                last_run: str | None) -> Alert:
    since = "never" if hours_since is None else f"for {hours_since:.0f} h"
    body = (f"District {district.slug!r} ({district.name}) has had no approved Clever extraction {since} "
            f"(limit {limit_hours:g} h: its schedule {district.dag_schedule!r} plus a margin).\n"
            f"Last run: {last_run or 'none'}.\n"
            f"What to do: check that the DAG {district.dag_id} is not paused and its runs are not failing or held "
            "(rpt_district_health, the alerts of its failed runs), and that Clever still shares the district.")
    return Alert(f"[clever-warehouse] {district.slug}: no fresh data {since}", body)


def send(settings: AlertSettings, alert: Alert) -> list[str]:
    """Send ``alert`` by every channel of ``settings``; returns the channels that failed (a
    failed channel never hides the others, and never fails the caller)."""
    failed = []
    if settings.email:
        try:
            from airflow.providers.smtp.hooks.smtp import SmtpHook

            with SmtpHook(smtp_conn_id=settings.smtp_conn_id) as hook:
                hook.send_email_smtp(to=list(settings.email), subject=alert.subject,
                                     html_content=f"<pre>{html.escape(alert.body)}</pre>")
        except Exception:  # a broken mail server must not stop the webhook
            log.exception("alert %r: email through connection %s failed", alert.subject, settings.smtp_conn_id)
            failed.append("email")
    if settings.webhook_conn_id:
        try:
            _post_webhook(settings.webhook_conn_id, alert)
        except Exception:
            log.exception("alert %r: webhook %s failed", alert.subject, settings.webhook_conn_id)
            failed.append("webhook")
    return failed


def _post_webhook(conn_id: str, alert: Alert) -> None:
    """POST ``{"text": ...}`` to the URL of the http connection (its host, with scheme and
    path, as clever.connections reads http connections); a password, if set, goes as a
    bearer token."""
    import requests
    from airflow.sdk import BaseHook

    from clever.connections import http_connection_url

    conn = BaseHook.get_connection(conn_id)
    headers = {"Authorization": f"Bearer {conn.password}"} if conn.password else {}
    response = requests.post(http_connection_url(conn), json={"text": f"*{alert.subject}*\n{alert.body}"},
                             headers=headers, timeout=30)
    response.raise_for_status()


class SyncFailedNotifier(BaseNotifier):
    """Failure callback of a sync's ``summarize`` task: the run failed (or was held)."""

    def __init__(self, district: DistrictConfig):
        super().__init__()
        self.district = district

    def notify(self, context: Any) -> None:
        from clever.connections import warehouse_target
        from clever.summary import run_summary

        sync_run_id = context["ti"].xcom_pull(task_ids="start_run")
        summary = run_summary(warehouse_target().conninfo, sync_run_id) if sync_run_id is not None else None
        if summary is None:  # the run never started: only Airflow knows why
            alert = Alert(f"[clever-warehouse] {self.district.slug}: sync failed before it started",
                          f"The sync of district {self.district.slug!r} failed before a run was recorded. "
                          "What to do: " + WHAT_TO_DO["unknown"])
        else:
            alert = run_failed_alert(self.district, summary)
        send(self.district.alerts, alert)
