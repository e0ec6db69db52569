"""Mistakes a user makes with the make targets get one line back saying how to fix them,
a non-zero exit and no traceback (CLEVER_TRACEBACK=1 shows it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from clever_devkit.runner import airflow_env


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def run(args: list[str], tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = airflow_env({k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_CLEVER_DEMO")}
                          | {"AIRFLOW_HOME": str(tmp_path / "airflow"),
                             "CLEVER_ARTIFACTS_DIR": str(tmp_path / "artifacts")} | env)
    return subprocess.run([sys.executable, "-m", *args], env=environ, capture_output=True, text=True, timeout=120,
                          check=False)


def assert_one_line(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for text in expected:
        assert text in lines[0]


def test_an_unknown_district(tmp_path):
    assert_one_line(run(["clever_devkit.runner", "sync", "--district", "nowhere"], tmp_path),
                    "district 'nowhere' is not in", "districts.yml")


def test_an_api_version_clever_does_not_have(tmp_path):
    config = tmp_path / "districts.yml"
    config.write_text("districts:\n- slug: springfield\n  name: Springfield\n  api_version: v4\n")
    result = run(["clever_devkit.runner", "sync", "--district", "springfield"], tmp_path,
                 CLEVER_DISTRICTS_FILE=str(config))
    assert_one_line(result, "api_version: Input should be 'v3.0' or 'v3.1'", str(config))


def test_the_simulators_port_taken(tmp_path, busy_port):
    result = run(["clever_devkit.runner", "sync", "--district", "demo"], tmp_path, SIM_PORT=str(busy_port))
    assert_one_line(result, f"port {busy_port} is in use", "SIM_PORT=")


def test_the_airflow_ui_port_taken(tmp_path, busy_port):
    assert_one_line(run(["clever_devkit.runner", "airflow", "--port", str(busy_port)], tmp_path),
                    f"port {busy_port} is in use", "AIRFLOW_PORT=")


def test_the_warehouse_port_taken(tmp_path, busy_port):
    result = run(["clever_devkit.pg_local", "up", "--port", str(busy_port), "--data-dir", str(tmp_path / "pg")],
                 tmp_path)
    assert_one_line(result, f"port {busy_port} is in use", "CLEVER_PG_PORT=")


def test_conf_that_is_not_json(tmp_path):
    assert_one_line(run(["clever_devkit.runner", "sync", "--district", "demo", "--conf", "{oops"], tmp_path),
                    "--conf is not valid JSON")


def test_the_traceback_when_asked_for(tmp_path):
    result = run(["clever_devkit.runner", "sync", "--district", "nowhere"], tmp_path, CLEVER_TRACEBACK="1")
    assert result.returncode != 0 and "Traceback" in result.stderr and "ConfigError" in result.stderr
