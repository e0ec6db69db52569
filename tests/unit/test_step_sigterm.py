"""SIGTERM stops a running step at once (``airflow dags test`` runs tasks in its own
process, where Airflow's handler would only call on_kill and let the step run on)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException

from clever.config import DistrictConfig
from clever.dag_factory import _stops_on_sigterm

DEMO = DistrictConfig(slug="demo", name="Demo", api_version="v3.0", schedule=None, page_size=100,
                      endpoints=("users",), mass_archive_threshold=0.2, mass_archive_floor=10)


def test_sigterm_fails_the_running_step_at_once_without_retries_and_calls_airflows_handler():
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        airflows = signal.getsignal(signal.SIGTERM)
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        started = time.monotonic()
        with pytest.raises(AirflowFailException, match="district 'demo': build stopped by SIGTERM"), \
                _stops_on_sigterm(DEMO, "build"):
            time.sleep(30)
        assert time.monotonic() - started < 5
        assert calls == [signal.SIGTERM], "Airflow's own handler (the operator's on_kill) still ran"
        assert signal.getsignal(signal.SIGTERM) is airflows, "the handler before the step is back"
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_step_not_interrupted_keeps_its_own_errors():
    with pytest.raises(ValueError, match="bad"), _stops_on_sigterm(DEMO, "x"):
        raise ValueError("bad")
