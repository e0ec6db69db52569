"""A failed sync alerts through Airflow's notifier (summarize's failure callback), by email
and webhook, naming the district, the step and what to do, without the token."""

from __future__ import annotations

import pytest

from tests.conftest import DEMO_TOKEN
from tests.e2e.conftest import make_airflow
from tests.helpers import SmtpSink, WebhookReceiver

pytestmark = pytest.mark.e2e


def test_a_revoked_token_alerts_by_email_and_webhook(airflow_home, warehouse_url, simulator, tmp_path):
    sink, hook = SmtpSink(), WebhookReceiver()
    try:
        alerts = {"email": ["oncall@example.org"], "webhook_conn_id": "clever_alerts_webhook"}
        airflow = make_airflow(airflow_home, warehouse_url, tmp_path, simulator, {"demo": DEMO_TOKEN},
                               district_options={"alerts": alerts})
        airflow.env["AIRFLOW_CONN_SMTP_DEFAULT"] = sink.connection()
        airflow.env["AIRFLOW_CONN_CLEVER_ALERTS_WEBHOOK"] = hook.connection()
        simulator.revoke("demo")
        airflow.sync(expect_success=False)
    finally:
        sink.close()
        hook.close()
    assert len(sink.messages) == 1 and len(hook.posts) == 1
    for text in (sink.messages[0][1], hook.posts[0]["text"]):
        assert "demo: sync run" in text and "failed at extract" in text
        assert "update the Airflow connection clever_demo" in text
        assert DEMO_TOKEN not in text
