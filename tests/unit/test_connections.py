"""Warehouse connection details: URLs built from Airflow connections, SSL settings passed
to psycopg and dbt, and passwords kept out of what is printed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from psycopg.conninfo import conninfo_to_dict

from clever.connections import WarehouseTarget, normalise_postgres_uri, redacted
from clever.paths import REPO_ROOT
from clever_devkit.pg_local import default_url
from clever_devkit.runner import airflow_env

AWKWARD_PASSWORD = "p@ss:w/rd?#%&= ü"
SSL = {"sslmode": "verify-full", "sslrootcert": "/etc/ssl/ca.pem", "sslcert": "/etc/ssl/c.crt",
       "sslkey": "/etc/ssl/c.key"}


@pytest.mark.parametrize("extra_as_text", [False, True])
def test_a_json_connection_becomes_an_encoded_url_that_keeps_libpq_extras(extra_as_text):
    extra = {**SSL, "connect_timeout": 7, "cursor": "realdictcursor"}  # cursor is the provider's, not libpq's
    connection = {"conn_type": "postgres", "login": "loader@corp", "password": AWKWARD_PASSWORD,
                  "host": "warehouse.internal", "port": 6432, "schema": "analytics/prod",
                  "extra": json.dumps(extra) if extra_as_text else extra}
    params = conninfo_to_dict(normalise_postgres_uri(json.dumps(connection)))
    assert params == {"user": "loader@corp", "password": AWKWARD_PASSWORD, "host": "warehouse.internal",
                      "port": "6432", "dbname": "analytics/prod", "connect_timeout": "7", **SSL}


def test_a_json_connection_without_login_or_extra():
    url = normalise_postgres_uri(json.dumps({"conn_type": "postgres", "host": "db", "schema": "wh"}))
    assert conninfo_to_dict(url) == {"host": "db", "port": "5432", "dbname": "wh"}


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_a_uri_connection_keeps_everything_but_its_scheme(scheme):
    rest = "loader:p%40ss@db:5432/wh?sslmode=require&sslrootcert=%2Fca.pem"
    assert normalise_postgres_uri(f"{scheme}://{rest}") == f"postgresql://{rest}"


def test_redacted_hides_the_password_and_nothing_else():
    url = normalise_postgres_uri(json.dumps(
        {"login": "loader", "password": AWKWARD_PASSWORD, "host": "db", "schema": "wh", "extra": SSL}))
    shown = redacted(url)
    assert AWKWARD_PASSWORD not in shown and "p%40ss" not in shown
    assert conninfo_to_dict(shown) == {**conninfo_to_dict(url), "password": "***"}
    assert redacted("postgresql://clever@127.0.0.1:55432/clever_warehouse") == (
        "postgresql://clever@127.0.0.1:55432/clever_warehouse")


def test_ssl_settings_reach_psycopg_and_dbt():
    target = WarehouseTarget.from_conninfo(
        normalise_postgres_uri(json.dumps({"login": "u", "password": "pw", "host": "db", "schema": "wh",
                                           "extra": SSL})))
    assert {k: v for k, v in conninfo_to_dict(target.conninfo).items() if k.startswith("ssl")} == SSL
    env = target.dbt_env()
    assert {k: env[f"CLEVER_WAREHOUSE_{k.upper()}"] for k in SSL} == SSL
    assert "pw" not in repr(target)
    plain = WarehouseTarget.from_conninfo("postgresql://u@db/wh").dbt_env()
    assert [plain[f"CLEVER_WAREHOUSE_{k.upper()}"] for k in SSL] == ["", "", "", ""]


TARGET_SCRIPT = r"""
import dataclasses, json, os, sys
from clever.connections import warehouse_target
outcomes = []
for variables in json.loads(sys.argv[1]):
    for name in ("AIRFLOW_CONN_CLEVER_WAREHOUSE", "CLEVER_EMBEDDED_WAREHOUSE_URL"):
        os.environ.pop(name, None)
    os.environ.update(variables)
    try:
        target = warehouse_target()
    except Exception as exc:
        outcomes.append({"error": type(exc).__name__})
    else:
        outcomes.append({**dataclasses.asdict(target), "password": bool(target.password)})
print(json.dumps(outcomes))
"""


def resolve_in_task_code(tmp_path, *cases: dict[str, str]) -> list[dict]:
    """clever.connections.warehouse_target() in a clean interpreter, once per set of variables."""
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "airflow"), "PYTHONPATH": str(REPO_ROOT / "plugins")}
    result = subprocess.run([sys.executable, "-c", TARGET_SCRIPT, json.dumps(cases)], env=env, capture_output=True,
                            text=True, check=True, timeout=300)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_runner_environment_never_shadows_a_stored_warehouse_connection(tmp_path):
    env = airflow_env({"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path)})
    assert "AIRFLOW_CONN_CLEVER_WAREHOUSE" not in env  # it would hide a metadata DB connection
    assert env["CLEVER_EMBEDDED_WAREHOUSE_URL"] == default_url()
    configured = airflow_env({"AIRFLOW_CONN_CLEVER_WAREHOUSE": "postgresql://x@db/wh", "AIRFLOW_HOME": str(tmp_path)})
    assert configured["AIRFLOW_CONN_CLEVER_WAREHOUSE"] == "postgresql://x@db/wh"


def test_tasks_use_the_connection_and_fall_back_to_the_embedded_warehouse_only_without_one(tmp_path):
    connection = json.dumps({"conn_type": "postgres", "login": "loader", "password": "pw", "host": "db",
                             "port": 6432, "schema": "wh", "extra": {**SSL, "cursor": "dictcursor"}})
    embedded = "postgresql://clever@127.0.0.1:55999/clever_warehouse"
    configured, fallback, neither = resolve_in_task_code(
        tmp_path,
        {"AIRFLOW_CONN_CLEVER_WAREHOUSE": connection, "CLEVER_EMBEDDED_WAREHOUSE_URL": embedded},
        {"CLEVER_EMBEDDED_WAREHOUSE_URL": embedded},
        {})
    assert configured == {"host": "db", "port": 6432, "user": "loader", "dbname": "wh", "password": True, **SSL}
    assert (fallback["host"], fallback["port"], fallback["dbname"]) == ("127.0.0.1", 55999, "clever_warehouse")
    assert neither == {"error": "AirflowNotFoundException"}


def test_dbt_sessions_run_without_jit_after_the_callers_options(monkeypatch):
    target = WarehouseTarget.from_conninfo("postgresql://u@db/wh")
    monkeypatch.delenv("PGOPTIONS", raising=False)
    assert target.dbt_env()["PGOPTIONS"] == "-c jit=off"
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=0")
    assert target.dbt_env()["PGOPTIONS"] == "-c statement_timeout=0 -c jit=off"


ENDPOINT_SCRIPT = r"""
import json, sys
from clever.config import DistrictConfig
from clever.connections import MissingConnection, clever_endpoint
district = DistrictConfig(slug="springfield", name="s", api_version="v3.0", schedule=None, page_size=100,
                          endpoints=("users",), mass_archive_threshold=0.2, mass_archive_floor=10)
try:
    found = clever_endpoint(district)
except MissingConnection as exc:
    print(json.dumps({"missing": str(exc)}))
else:
    print(json.dumps({"base_url": found.base_url, "token": bool(found.token)}))
"""


def test_a_district_without_its_connection_is_told_how_to_add_it(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "airflow"), "PYTHONPATH": str(REPO_ROOT / "plugins")}

    def endpoint(**variables):
        result = subprocess.run([sys.executable, "-c", ENDPOINT_SCRIPT], env={**env, **variables},
                                capture_output=True, text=True, check=True, timeout=300)
        return json.loads(result.stdout.strip().splitlines()[-1])

    message = endpoint()["missing"]
    assert "district 'springfield': no Airflow connection 'clever_springfield'" in message
    assert "airflow connections add clever_springfield" in message and "AIRFLOW_CONN_CLEVER_SPRINGFIELD" in message
    assert endpoint(AIRFLOW_CONN_CLEVER_SPRINGFIELD='{"conn_type": "http", "host": "https://api.clever.com", '
                                                   '"password": "t0ken"}') == {"base_url": "https://api.clever.com",
                                                                                "token": True}


@pytest.mark.parametrize(("host", "schema", "port", "url"), [
    ("api.clever.com", None, None, "https://api.clever.com"),
    ("127.0.0.1", "http", 8765, "http://127.0.0.1:8765"),
    ("http://127.0.0.1/hook", None, 9000, "http://127.0.0.1:9000/hook"),  # a webhook's path keeps its place
    ("https://hooks.example.org/services/T0/B0/", None, None, "https://hooks.example.org/services/T0/B0"),
])
def test_an_http_connections_url(host, schema, port, url):
    from types import SimpleNamespace

    from clever.connections import http_connection_url

    assert http_connection_url(SimpleNamespace(host=host, schema=schema, port=port)) == url
