"""`make db-up` / `db-status` on a server that already runs on another port."""

from __future__ import annotations

import os
import stat
import subprocess

import psycopg
import pytest

from clever_devkit import pg_local
from clever_devkit.pg_local import LocalPostgres, free_port


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


def test_every_connection_needs_the_password_and_the_socket_admits_only_the_server(running_server, tmp_path):
    port = running_server.port
    assert "@127.0.0.1" in running_server.url and ":" in running_server.url.split("@")[0].removeprefix("postgresql://")
    assert stat.S_IMODE(running_server.password_file.stat().st_mode) == 0o600
    with psycopg.connect(running_server.url_for("postgres")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    for wrong in (f"postgresql://clever@127.0.0.1:{port}/postgres", f"postgresql://clever:guess@127.0.0.1:{port}/postgres",
                  f"postgresql://postgres@127.0.0.1:{port}/postgres"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(wrong, connect_timeout=5).close()
    if os.geteuid() == 0:  # another local account cannot use the server's socket either
        socket_dir = running_server._real_data_dir().parent
        result = subprocess.run(["runuser", "-u", "nobody", "--", str(running_server.bin_dir / "psql"), "-h",
                                 str(socket_dir), "-p", str(port), "-U", "clever", "-d", "postgres", "-c", "SELECT 1"],
                                capture_output=True, text=True, check=False)
        assert result.returncode != 0 and "Permission denied" in result.stderr, result.stderr


def test_a_server_set_up_with_trust_is_switched_to_passwords_at_its_next_start(tmp_path):
    base = tmp_path / "old"
    base.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(base, 0o755)
    server = LocalPostgres(data_dir=base / "pgdata", port=free_port(), dbname="postgres", fast_unsafe=True)
    server.start()
    try:
        server.stop()
        hba = server._real_data_dir() / "pg_hba.conf"  # as a server initialised before passwords was
        hba.write_text(hba.read_text().replace("scram-sha-256", "trust"))
        server.password_file.unlink()
        assert server.url == f"postgresql://clever@127.0.0.1:{server.port}/postgres"
        server.start()
        assert "trust" not in [line.split()[-1] for line in hba.read_text().splitlines()
                               if line.strip() and not line.startswith("#")]
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"postgresql://clever@127.0.0.1:{server.port}/postgres", connect_timeout=5).close()
    finally:
        server.destroy()


def test_printed_urls_hide_the_password(running_server, monkeypatch, capsys):
    monkeypatch.delenv("AIRFLOW_CONN_CLEVER_WAREHOUSE", raising=False)
    password = running_server.password_file.read_text().strip()
    assert pg_local.main(["status", "--data-dir", str(running_server.data_dir), "--port",
                          str(running_server.port)]) == 0
    printed = capsys.readouterr().out
    assert password not in printed and "clever:***@127.0.0.1" in printed
    assert pg_local.main(["url", "--data-dir", str(running_server.data_dir), "--port", str(running_server.port)]) == 0
    assert password in capsys.readouterr().out, "`pg_local url` is for psql and scripts: the whole URL"
