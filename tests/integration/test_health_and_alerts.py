"""Stale districts are flagged (rpt_district_health) and alerted once per limit period, by
email and webhook; alerts carry counts and names, never a token or a student's data."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest

from clever import pipeline, runs
from clever.alerts import run_failed_alert, send
from clever.config import AlertSettings, get_district
from clever.health import check_districts
from clever.summary import summarize
from tests.conftest import DEMO_TOKEN
from tests.helpers import SmtpSink, WebhookReceiver, load_records, write_records


@pytest.fixture
def channels(monkeypatch):
    sink, hook = SmtpSink(), WebhookReceiver()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", sink.connection())
    monkeypatch.setenv("AIRFLOW_CONN_CLEVER_ALERTS_WEBHOOK", hook.connection())
    yield sink, hook
    sink.close()
    hook.close()


@pytest.fixture
def warehouse_url(synced_warehouse_url):
    """The sample district after a first sync (a copy of the session's synced warehouse)."""
    return synced_warehouse_url


ALERTS = AlertSettings(email=("oncall@example.org",), webhook_conn_id="clever_alerts_webhook")


def test_stale_districts_are_flagged_and_alerted_once_per_period(warehouse_url, simulator, channels):
    sink, hook = channels
    demo = replace(get_district("demo"), alerts=ALERTS)  # @daily: stale after 36 h
    never = replace(demo, slug="never_synced", name="Never Synced")
    by_hand = replace(demo, slug="by_hand", name="By Hand", schedule=None)
    with psycopg.connect(warehouse_url) as conn:  # the first sync's approval, made when the template was
        (approved_at,) = conn.execute("SELECT max(approved_at) FROM clever_landing.approved_extractions").fetchone()
    now = approved_at + timedelta(minutes=30)
    assert check_districts(warehouse_url, [demo, by_hand], now) == []

    later = now + timedelta(hours=40)
    stale = check_districts(warehouse_url, [demo, never, by_hand], later)
    assert [(s.slug, s.limit_hours) for s in stale] == [("demo", 36.0), ("never_synced", 36.0)]
    assert stale[0].hours_since_approval == 40.5 and stale[1].hours_since_approval is None
    assert len(sink.messages) == 2 and len(hook.posts) == 2
    recipients, message = sink.messages[0]
    assert recipients == ["oncall@example.org"]
    assert "demo: no fresh data for 40 h" in message and "limit 36 h" in message
    assert "clever_sync_demo" in hook.posts[0]["text"] and "is not paused" in hook.posts[0]["text"]

    check_districts(warehouse_url, [demo, never], later + timedelta(hours=1))
    assert len(sink.messages) == 2, "alerted once per limit period, not every hour"
    check_districts(warehouse_url, [demo], later + timedelta(hours=37))
    assert len(sink.messages) == 3

    with psycopg.connect(warehouse_url) as conn:
        conn.execute("UPDATE clever_landing.approved_extractions SET approved_at = now() - interval '40 hours'")
        row = conn.execute("SELECT is_stale, round(hours_since_approval), stale_after_hours, stale_alerted_at, "
                           "last_failed_step FROM clever_reports.rpt_district_health "
                           "WHERE district_slug = 'demo'").fetchone()
    assert row == (True, 40, 36.0, later + timedelta(hours=37), None)


def test_a_failed_runs_alert_names_the_step_and_counts_and_no_personal_data(warehouse_url, simulator, district_dir,
                                                                           channels):
    sink, hook = channels
    demo = replace(get_district("demo"), alerts=ALERTS)
    users = load_records(district_dir, "v3.0", "users")
    write_records(district_dir, "v3.0", "users", users[:100])  # 49 of 149 unshared: the guard holds
    run_id = runs.start_run(warehouse_url, demo, None)
    for endpoint in demo.endpoints:
        pipeline.extract(warehouse_url, demo, run_id, endpoint, simulator.base_url, DEMO_TOKEN)
    runs.close_extraction(warehouse_url, run_id)
    with pytest.raises(Exception, match="mass-archive guard tripped") as held:
        pipeline.approve(warehouse_url, run_id, threshold=demo.mass_archive_threshold, floor=demo.mass_archive_floor,
                         change_threshold=demo.mass_update_threshold)
    runs.fail_run(warehouse_url, run_id, "approve", held.value)
    alert = run_failed_alert(demo, summarize(warehouse_url, run_id, None))
    assert alert.subject == f"[clever-warehouse] demo: sync run {run_id} failed at guard"
    assert "users would archive 49 of 149 (limit 14)" in alert.body and "allow_mass_archive=true" in alert.body
    assert send(demo.alerts, alert) == []
    texts = [sink.messages[0][1], hook.posts[0]["text"]]
    for text in texts:
        assert "would archive 49 of 149" in text
        assert DEMO_TOKEN not in text
        for user in users[100:]:  # the students it is about: never their names or emails
            assert user["name"]["last"] not in text and (user.get("email") or "@@") not in text


def test_a_broken_channel_does_not_stop_the_other(channels, monkeypatch):
    _, hook = channels
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", '{"conn_type": "smtp", "host": "127.0.0.1", "port": 9, '
                                                    '"extra": {"disable_tls": true, "retry_limit": 0, '
                                                    '"timeout": 2}}')
    from clever.alerts import Alert

    assert send(ALERTS, Alert("s", "b")) == ["email"]
    assert hook.posts == [{"text": "*s*\nb"}]


def test_dbt_source_freshness_warns_when_no_district_had_an_approval_for_36_hours(warehouse_url):
    from clever.connections import WarehouseTarget
    from clever.dbt_runner import run_dbt

    def freshness() -> str:
        outcome = run_dbt(WarehouseTarget.from_conninfo(warehouse_url),
                          ["source", "freshness", "--select", "source:clever_landing.approved_extractions"])
        return outcome.statuses["source.clever_warehouse.clever_landing.approved_extractions"]

    assert freshness() == "pass"
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("UPDATE clever_landing.approved_extractions SET approved_at = now() - interval '40 hours'")
    assert freshness() == "warn"
