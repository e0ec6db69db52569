"""docker-compose.yaml, validated offline by Debian's docker-compose (no Docker engine
needed), and the deployment it describes checked service by service."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clever.paths import REPO_ROOT
from clever_devkit.system_tools import find_or_install

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
AIRFLOW_SERVICES = {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                    "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer",
                    "airflow-worker": "celery worker"}
MOUNTED = ("dags", "plugins", "dbt_project", "expectations", "config")
SECRETS = {"AIRFLOW_FERNET_KEY": "x7p4vP0c7Z8m1bq9Gm9uJ4wXyqkX2l0iFz7WcY3Vq3o=", "AIRFLOW_SECRET_KEY": "s" * 64,
           "AIRFLOW_JWT_SECRET": "j" * 64, "CLEVER_WAREHOUSE_PASSWORD": "w" * 48}


def compose(*args: str, project: Path = REPO_ROOT, secrets: dict[str, str] = SECRETS,
            **env: str) -> subprocess.CompletedProcess[str]:
    command = [str(find_or_install("docker-compose")), "--project-directory", str(project),
               "-f", str(project / "docker-compose.yaml"), *args]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CLEVER", "COMPOSE"))}
    return subprocess.run(command, env={**clean, **secrets, **env}, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture(scope="module")
def config() -> dict:
    checked = compose("config", "-q")
    assert checked.returncode == 0, checked.stderr
    rendered = compose("--profile", "flower", "config", AIRFLOW_API_PORT="18080", AIRFLOW_WORKER_CONCURRENCY="16")
    assert rendered.returncode == 0, rendered.stderr
    return yaml.safe_load(rendered.stdout)


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret(missing):
    result = compose("config", "-q", secrets={k: v for k, v in SECRETS.items() if k != missing})
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr and "docs/OPERATIONS.md#deployment-with-docker-compose" in result.stderr


def test_the_secrets_reach_every_component(config):
    services = config["services"]
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__FERNET_KEY"] == SECRETS["AIRFLOW_FERNET_KEY"], name
        assert env["AIRFLOW__API__SECRET_KEY"] == SECRETS["AIRFLOW_SECRET_KEY"], name
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == SECRETS["AIRFLOW_JWT_SECRET"], name
    assert services["warehouse"]["environment"]["POSTGRES_PASSWORD"] == SECRETS["CLEVER_WAREHOUSE_PASSWORD"]


def test_validation_rejects_a_broken_file(tmp_path):
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["airflow-worker"]["depends_on"]["redis"]["condition"] = "whenever"
    (tmp_path / "docker-compose.yaml").write_text(yaml.safe_dump(broken))
    result = compose("config", "-q", project=tmp_path)
    assert result.returncode != 0 and "condition" in result.stderr


def test_airflow_3_services_run_celery_workers_on_redis(config):
    services = config["services"]
    assert set(AIRFLOW_SERVICES) | {"airflow-init", "postgres", "warehouse", "redis", "flower"} <= set(services)
    for name, command in AIRFLOW_SERVICES.items():
        service = services[name]
        actual = service["command"]
        assert (" ".join(actual) if isinstance(actual, list) else actual) == command, name
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:@redis:6379"), name
        assert "@postgres/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", name
    # every component signs and checks the same tokens
    for secret in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
        assert len({services[name]["environment"][secret] for name in AIRFLOW_SERVICES}) == 1, secret
    worker = services["airflow-worker"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["environment"]["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "16"
    assert "container_name" not in worker  # so `--scale airflow-worker=N` works
    port = services["airflow-apiserver"]["ports"][0]
    assert (f"{port['host_ip']}:{port['published']}:{port['target']}" if isinstance(port, dict)
            else port.split("/")[0]) == "127.0.0.1:18080:8080"
    assert all("healthcheck" in services[name] for name in (*AIRFLOW_SERVICES, "postgres", "warehouse", "redis"))


def test_metadata_and_warehouse_are_separate_postgres_servers(config):
    services = config["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["warehouse"]["image"].startswith("postgres:")
    warehouse_env = services["warehouse"]["environment"]
    url = services["airflow-worker"]["environment"]["AIRFLOW_CONN_CLEVER_WAREHOUSE"]
    assert url == (f"postgresql://{warehouse_env['POSTGRES_USER']}:{warehouse_env['POSTGRES_PASSWORD']}"
                   f"@warehouse:5432/{warehouse_env['POSTGRES_DB']}")
    volumes = {v for name in ("postgres", "warehouse") for v in services[name]["volumes"]}
    assert len({v["source"] if isinstance(v, dict) else v.split(":")[0] for v in volumes}) == 2


def test_code_config_dbt_and_expectations_are_mounted_where_the_pipeline_reads_them(config):
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        service = config["services"][name]
        mounts = {}
        for volume in service["volumes"]:
            source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) \
                else volume.split(":")[:2]
            mounts[target] = source
        for folder in MOUNTED:
            assert Path(mounts[f"/opt/airflow/{folder}"]).resolve() == (REPO_ROOT / folder).resolve(), (name, folder)
            assert (REPO_ROOT / folder).is_dir()
        env = service["environment"]
        assert env["CLEVER_DISTRICTS_FILE"] == "/opt/airflow/config/districts.yml"
        assert env["CLEVER_DBT_PROJECT_DIR"] == "/opt/airflow/dbt_project"
        assert env["PYTHONPATH"] == "/opt/airflow/plugins"
    init = " ".join(config["services"]["airflow-init"]["command"])
    assert "airflow pools import /opt/airflow/config/airflow_pools.json" in init


def test_the_pools_are_the_ones_the_fleet_bench_runs_with():
    import json

    from clever_devkit.fleet import POOLS_FILE, pool_settings

    assert POOLS_FILE == REPO_ROOT / "config" / "airflow_pools.json"
    pools = json.loads(POOLS_FILE.read_text())
    assert set(pools) == {"clever_extract", "clever_build"}  # what config/districts.yml may name
    assert pool_settings(extract_slots=4, build_slots=2) == {"clever_extract": {**pools["clever_extract"], "slots": 4},
                                                             "clever_build": {**pools["clever_build"], "slots": 2}}


def test_image_is_the_pinned_airflow_with_the_pinned_requirements(config):
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO_ROOT / "requirements.txt").read_text(), re.M).group(1)
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert f"ARG AIRFLOW_VERSION={pinned}\n" in dockerfile  # bump both together
    assert "FROM apache/airflow:${AIRFLOW_VERSION}-python3.11" in dockerfile
    assert "-r /opt/clever/requirements.txt -c /opt/clever/constraints.txt" in dockerfile
    images = {config["services"][name]["image"] for name in (*AIRFLOW_SERVICES, "airflow-init")}
    assert images == {f"clever-warehouse/airflow:{pinned}"}


def test_the_pinned_packages_load_the_celery_executor_the_compose_file_runs():
    result = subprocess.run([str(Path(sys.executable)), "-c",
                             "from airflow.providers.celery.executors.celery_executor import CeleryExecutor"],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
