"""`make db-up` / `db-status` on a server that already runs on another port."""

from __future__ import annotations

import pytest

from clever import pg_local
from clever.pg_local import LocalPostgres, free_port


@pytest.fixture
def running_server(pg_server) -> LocalPostgres:
    if not isinstance(pg_server, LocalPostgres):
        pytest.skip("needs the throwaway server this suite starts (CLEVER_TEST_PG_URL is set)")
    return pg_server


@pytest.mark.parametrize("action", ["up", "status"])
def test_a_server_running_on_another_port_is_reported_not_misdescribed(running_server, monkeypatch, capsys, action):
    monkeypatch.delenv("AIRFLOW_CONN_CLEVER_WAREHOUSE", raising=False)
    requested = free_port()
    code = pg_local.main([action, "--data-dir", str(running_server.data_dir), "--port", str(requested)])
    out, err = capsys.readouterr()
    assert code != 0
    assert f"already running on port {running_server.port}, not on the requested port {requested}" in err
    assert f"127.0.0.1:{running_server.port}/" in err
    assert f":{requested}/" not in out + err  # no URL that would not connect
    assert running_server.running_port() == running_server.port  # left running as it was


def test_up_on_the_port_it_runs_on_reports_its_url(running_server, monkeypatch, capsys):
    monkeypatch.delenv("AIRFLOW_CONN_CLEVER_WAREHOUSE", raising=False)
    code = pg_local.main(["up", "--data-dir", str(running_server.data_dir), "--port", str(running_server.port)])
    assert code == 0
    assert f"127.0.0.1:{running_server.port}/" in capsys.readouterr().out
