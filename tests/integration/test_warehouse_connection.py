"""The warehouse connection's SSL settings reach both drivers (psycopg in the tasks, dbt
through profiles.yml), and `make demo` prints the warehouse without its password."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from clever.connections import WarehouseTarget, postgres_url
from clever.dbt_runner import DBT_PROJECT_DIR
from clever_devkit import demo

SSL_FILES = {"sslrootcert": "/nonexistent/ca.pem", "sslcert": "/nonexistent/c.crt", "sslkey": "/nonexistent/c.key"}


def dbt_debug(target: WarehouseTarget, monkeypatch, tmp_path) -> tuple[bool, str]:
    """`dbt debug --connection` with the variables run_dbt sets: (connected, dbt's messages)."""
    from dbt.cli.main import dbtRunner

    for name, value in target.dbt_env().items():
        monkeypatch.setenv(name, value)
    messages: list[str] = []
    result = dbtRunner(callbacks=[lambda event: messages.append(event.info.msg)]).invoke(
        ["debug", "--connection", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--log-path", str(tmp_path)])
    return result.success, "\n".join(messages)


def test_ssl_settings_of_the_connection_reach_psycopg_and_dbt(warehouse_url, monkeypatch, tmp_path):
    plain = WarehouseTarget.from_conninfo(warehouse_url)
    connected, _ = dbt_debug(plain, monkeypatch, tmp_path)
    assert connected, "unset SSL settings must not stop dbt connecting"

    # The test server has no SSL: a connection that requires it must fail in both drivers.
    strict = dataclasses.replace(plain, sslmode="require", **SSL_FILES)
    with pytest.raises(psycopg.OperationalError, match="server does not support SSL"):
        psycopg.connect(strict.conninfo)
    connected, messages = dbt_debug(strict, monkeypatch, tmp_path)
    assert not connected
    assert "server does not support SSL, but SSL was required" in messages
    for name, value in SSL_FILES.items():  # dbt debug lists the profile it resolved
        assert f"{name}: {value}" in messages


def test_demo_summary_prints_the_warehouse_without_its_password(warehouse_url, capsys):
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA clever_marts")
        for mart in demo.MARTS:
            conn.execute(f"CREATE TABLE clever_marts.{mart} (is_archived boolean)")
        conn.execute("INSERT INTO clever_marts.dim_users VALUES (false), (true)")
    password = conninfo_to_dict(warehouse_url)["password"]  # the test server asks for it
    assert password
    docs = demo.REPO_ROOT / "index.html"
    demo.print_summary(postgres_url(conninfo_to_dict(warehouse_url)), docs, 3.0, "/af")
    out = capsys.readouterr().out
    assert password not in out
    assert "Warehouse: postgresql://" in out and ":***@" in out
    assert "clever_marts.dim_users" in out and "2 rows  (1 archived)" in out
    assert str(docs) in out


def test_make_demo_names_the_data_docs_of_the_last_run_that_validated_anything(warehouse_url):
    """The UI walkthrough's run (nothing new to check) has no Data Docs: the summary must
    not say 'None' because of it."""
    import psycopg

    from clever.runs import start_sync_run
    from clever.validation import data_docs_index
    from clever.warehouse import ensure_landing_schema

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        ensure_landing_schema(conn)
        validated = start_sync_run(conn, "demo", "v3.0", ["users"]).sync_run_id
        nothing_checked = start_sync_run(conn, "demo", "v3.0", ["users"]).sync_run_id
    assert demo.latest_data_docs(warehouse_url) is None
    index = data_docs_index("demo", validated)
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text("<html></html>")
    assert nothing_checked > validated
    assert demo.latest_data_docs(warehouse_url) == str(index)
