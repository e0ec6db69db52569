"""Onboarding end to end: the clever_discovery DAG reads Clever's token list (the
simulator's GET /oauth/tokens), stores each district's token in Airflow (a Variable, no
connection set up by hand), the discovered district's DAG appears and syncs with it, and
a district that leaves the list is disconnected; no token in any log or the warehouse."""

from __future__ import annotations

import json
import os
import subprocess

import psycopg
import pytest

from clever_devkit.runner import BIN_DIR, airflow_env
from clever_devkit.sample_district import generate
from clever_devkit.simulator import CleverSimulator
from tests.e2e.conftest import Airflow, write_districts_file

APP = ("e2e-app-client", "e2e-app-secret-never-log")
TOKEN = "lakeview-e2e-token-4d1c"


@pytest.fixture
def onboarding(airflow_home, warehouse_url, tmp_path):
    district = tmp_path / "lakeview"
    generate(district, students=120, seed=21, district_name="Lakeview Unified")
    with CleverSimulator({"lakeview": (TOKEN, district)}, app_credentials=APP) as sim:
        config = write_districts_file(tmp_path / "districts.yml", [])
        text = config.read_text() + "discovery:\n  enabled: true\n  schedule: null\n"
        config.write_text(text)
        env = {**os.environ, "AIRFLOW_HOME": str(airflow_home), "AIRFLOW_CONN_CLEVER_WAREHOUSE": warehouse_url,
               "CLEVER_DISTRICTS_FILE": str(config), "CLEVER_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
               "CLEVER_REGISTRY_FILE": str(tmp_path / "state" / "district_registry.json"),
               "AIRFLOW_CONN_CLEVER_APP": json.dumps({"conn_type": "http", "host": sim.base_url, "login": APP[0],
                                                      "password": APP[1], "extra": {"api_url": sim.base_url}})}
        yield Airflow(airflow_env(env), warehouse_url), sim, tmp_path


def test_a_district_found_in_clevers_token_list_gets_its_dag_and_syncs(onboarding):
    airflow, sim, tmp_path = onboarding
    variable = "clever_access_token_lakeview_unified"
    try:
        found = airflow.run("clever_discovery")
        assert "onboarded ['lakeview_unified']" in found
        synced = airflow.sync("lakeview_unified")  # no clever_lakeview_unified connection: the stored token
        assert airflow.scalar("SELECT count(*) FROM clever_marts.dim_users WHERE district_slug = 'lakeview_unified' "
                              "AND NOT is_archived") > 120

        sim.disconnect("lakeview")
        left = airflow.run("clever_discovery")
        assert "disconnected ['lakeview_unified']" in left
        assert airflow.query("SELECT connection_status, disconnect_reason FROM clever_reports.rpt_district_health "
                             "WHERE district_slug = 'lakeview_unified'") == [("disconnected", "token_revoked")]
        registry = json.loads((tmp_path / "state" / "district_registry.json").read_text())
        assert [(d["slug"], d["status"]) for d in registry["districts"]] == [("lakeview_unified", "disconnected")]

        with psycopg.connect(airflow.warehouse_url) as conn:
            dump = conn.execute("SELECT string_agg(to_jsonb(c)::text, ' ') FROM clever_landing.district_connections "
                                "AS c").fetchone()[0]
        for text in (found, synced, left, dump, json.dumps(registry)):
            assert TOKEN not in text and APP[1] not in text
    finally:
        subprocess.run([str(BIN_DIR / "airflow"), "variables", "delete", variable], env=airflow.env,
                       capture_output=True, check=False)
