"""The DAG file and factory, parsed by Airflow's own DagBag in a clean interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clever.paths import REPO_ROOT
from clever_devkit.runner import airflow_env

PARSE_SCRIPT = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
heavy = sorted({m.split('.')[0] for m in sys.modules
                if m.split('.')[0] in {'dbt', 'great_expectations', 'pandas', 'psycopg', 'requests', 'matplotlib'}})
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "tasks": sorted(t.task_id for t in dag.tasks),
        "schedule": getattr(dag.timetable, "expression", None),
        "assets": sorted(a.name for a in getattr(getattr(dag.timetable, "asset_condition", None), "objects", ())),
        "outlets": {t.task_id: sorted(a.name for a in t.outlets) for t in dag.tasks if t.outlets},
        "pools": {t.task_id: t.pool for t in dag.tasks},
        "timeouts": {t.task_id: t.execution_timeout and t.execution_timeout.total_seconds() / 60 for t in dag.tasks},
        "dagrun_timeout": dag.dagrun_timeout and dag.dagrun_timeout.total_seconds() / 60,
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "params": {k: dag.params.get_param(k).value for k in dag.params},
        "tags": sorted(dag.tags),
        "paused_upon_creation": dag.is_paused_upon_creation,
        "description": dag.description,
        "doc_md": dag.doc_md,
    }
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags, "heavy": heavy}))
"""


def parse_dags(tmp_path: Path, districts: list[dict], discovery: dict | None = None,
               registry: list[dict] | None = None) -> dict:
    """Every DAG of the dags folder for this config (and registry file of discovered and
    disconnected districts)."""
    config = tmp_path / "districts.yml"
    config.write_text(yaml.safe_dump({"districts": districts, **({"discovery": discovery} if discovery else {})}))
    registry_file = tmp_path / "district_registry.json"
    if registry is not None:
        registry_file.write_text(json.dumps({"districts": registry}))
    env = airflow_env({"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "airflow"),
                       "CLEVER_DISTRICTS_FILE": str(config), "CLEVER_REGISTRY_FILE": str(registry_file)})
    result = subprocess.run([sys.executable, "-c", PARSE_SCRIPT, str(REPO_ROOT / "dags")], env=env,
                            capture_output=True, text=True, check=True, timeout=300)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_one_dag_per_configured_district(tmp_path):
    parsed = parse_dags(tmp_path, [
        {"slug": "demo"},
        {"slug": "springfield", "api_version": "v3.1", "schedule": "30 2 * * *", "endpoints": ["users", "sections"]},
        {"slug": "eventsville", "sync_mode": "events", "events_schedule": "*/15 * * * *"},
    ])
    assert parsed["errors"] == {}
    # an events district runs on its events schedule (full syncs are decided run by run)
    assert parsed["dags"]["clever_sync_eventsville"]["schedule"] == "*/15 * * * *"
    assert set(parsed["dags"]) == {"clever_sync_demo", "clever_sync_springfield", "clever_sync_eventsville",
                                   "clever_rollover_report",
                                   "clever_district_health"}
    assert parsed["dags"]["clever_district_health"]["schedule"] == "0 * * * *"  # @hourly
    demo = parsed["dags"]["clever_sync_demo"]
    assert demo["schedule"] == "0 0 * * *"  # @daily
    assert demo["catchup"] is False and demo["max_active_runs"] == 1
    assert demo["params"] == {"full_refresh": False, "allow_mass_archive": False,
                              "endpoints": ["districts", "schools", "users", "sections", "terms", "courses"],
                              "sync_mode": "auto", "archive_disconnected": False}
    assert demo["tasks"] == sorted(["start_run", "extract", "validate", "approve", "build", "summarize"])
    assert demo["outlets"] == {"build": ["clever_marts"]}  # a successful build schedules the report
    assert set(demo["pools"].values()) == {"default_pool"}
    springfield = parsed["dags"]["clever_sync_springfield"]
    assert springfield["schedule"] == "30 2 * * *"
    assert springfield["params"]["endpoints"] == ["users", "sections"]
    assert "district:springfield" in springfield["tags"]


def test_discovered_districts_get_dags_and_disconnected_ones_stop_scheduling(tmp_path):
    parsed = parse_dags(tmp_path, [{"slug": "demo"}, {"slug": "hill", "clever_district_id": "5" * 24}],
                        discovery={"enabled": True, "schedule": "0 * * * *"}, registry=[
                            {"slug": "hill", "clever_district_id": "5" * 24, "source": "config",
                             "status": "disconnected"},
                            {"slug": "lakeview", "clever_district_id": "6" * 24, "name": "Lakeview Unified",
                             "source": "discovered", "status": "connected"}])
    assert parsed["errors"] == {}
    dags = parsed["dags"]
    assert {"clever_sync_demo", "clever_sync_hill", "clever_sync_lakeview", "clever_discovery"} <= set(dags)
    assert dags["clever_discovery"]["schedule"] == "0 * * * *"
    assert dags["clever_discovery"]["params"] == {"allow_mass_disconnect": False}
    lakeview = dags["clever_sync_lakeview"]
    assert lakeview["schedule"] == "0 0 * * *" and "discovered" in lakeview["tags"]
    assert "Lakeview Unified" in lakeview["description"]
    # discovered: syncs without anyone unpausing it; configured ones follow the deployment's setting
    assert lakeview["paused_upon_creation"] is False and dags["clever_discovery"]["paused_upon_creation"] is False
    assert dags["clever_sync_demo"]["paused_upon_creation"] is None
    hill = dags["clever_sync_hill"]
    assert hill["schedule"] is None and "disconnected" in hill["tags"] and "DISCONNECTED" in hill["description"]
    assert dags["clever_sync_demo"]["schedule"] == "0 0 * * *"
    # the health DAG archives disconnected districts whose policy says so, by triggering their DAGs
    assert dags["clever_district_health"]["tasks"] == ["archive_disconnected", "check_districts",
                                                        "disconnected_to_archive"]
    (tmp_path / "off").mkdir()
    assert "clever_discovery" not in parse_dags(tmp_path / "off", [{"slug": "demo"}])["dags"]
    (tmp_path / "bad").mkdir()  # a discovery block with errors hides no district
    bad = parse_dags(tmp_path / "bad", [{"slug": "demo"}], discovery={"enabled": True, "max_disconnect_share": 2})
    assert bad["errors"] == {} and {"clever_sync_demo", "clever_config_errors"} <= set(bad["dags"])
    assert "discovery: max_disconnect_share" in bad["dags"]["clever_config_errors"]["doc_md"]


def test_pools_from_config_hold_extracts_and_builds(tmp_path):
    dags = parse_dags(tmp_path, [{"slug": "demo", "extract_pool": "clever_extract", "build_pool": "clever_build"}])
    pools = dags["dags"]["clever_sync_demo"]["pools"]
    assert pools["extract"] == "clever_extract"
    assert pools["approve"] == pools["build"] == "clever_build"
    assert pools["summarize"] == "default_pool"


def test_every_task_and_the_run_have_time_limits_that_grow_with_the_district(tmp_path):
    dags = parse_dags(tmp_path, [
        {"slug": "small", "expected_students": 500},
        {"slug": "large", "expected_students": 1_000_000},
        {"slug": "tuned", "expected_students": 500, "task_timeout_minutes": {"extract": 5}, "extract_retries": 0},
    ])["dags"]
    small, large, tuned = (dags[f"clever_sync_{slug}"] for slug in ("small", "large", "tuned"))
    assert small["timeouts"] == {"start_run": 10, "extract": 31, "validate": 15.5, "approve": 70.2, "build": 81,
                                 "summarize": 15.2}
    # build: the lock wait, 20 min, then 1 min per 10,000 students
    assert large["timeouts"]["extract"] == 130 and large["timeouts"]["build"] == 60 + 20 + 100
    assert all(large["timeouts"][task] > minutes for task, minutes in small["timeouts"].items() if task != "start_run")
    # Every task, then two retries of extract (120 s apart by default).
    assert small["dagrun_timeout"] == pytest.approx(sum(small["timeouts"].values()) + 2 * (31 + 2))
    assert tuned["timeouts"]["extract"] == 5
    assert tuned["dagrun_timeout"] == pytest.approx(sum(tuned["timeouts"].values()))


@pytest.mark.parametrize("bad", [{"task_timeout_minutes": {"extrct": 5}}, {"task_timeout_minutes": {"build": 0}},
                                 {"expected_students": "many"}, {"expected_students": 0}])
def test_config_rejects_time_limits_that_cannot_work(tmp_path, bad):
    from clever.config import ConfigError, load_districts

    path = tmp_path / "d.yml"
    path.write_text(yaml.safe_dump({"districts": [{"slug": "x", **bad}]}))
    with pytest.raises(ConfigError, match=r"task_timeout_minutes|expected_students"):
        load_districts(path)


def test_rollover_report_dag_runs_on_rebuilt_marts_for_any_configured_district(tmp_path):
    report = parse_dags(tmp_path, [{"slug": "demo"}, {"slug": "springfield"}])["dags"]["clever_rollover_report"]
    assert report["assets"] == ["clever_marts"]
    assert report["tasks"] == ["plan_districts", "render"]
    assert report["params"] == {"districts": [], "comparison": "school_year", "from_period": None}
    assert report["catchup"] is False and report["max_active_runs"] == 1


def test_parsing_imports_no_heavy_library(tmp_path):
    assert parse_dags(tmp_path, [{"slug": "demo"}])["heavy"] == []


def test_a_bad_district_entry_hides_no_other_district_and_is_named(tmp_path):
    parsed = parse_dags(tmp_path, [{"slug": "demo"}, {"slug": "Bad Slug!"}, {"slug": "v4", "api_version": "v4"}])
    assert parsed["errors"] == {}
    assert "clever_sync_demo" in parsed["dags"]
    errors = parsed["dags"]["clever_config_errors"]
    assert errors["tasks"] == ["report_config_errors"] and errors["schedule"] == "0 0 * * *"
    assert errors["description"] == "2 district entries of the config have errors: Bad Slug!, v4 (see its docs)"
    assert "(Bad Slug!): slug: must be lower-case letters" in errors["doc_md"]
    assert "(v4): api_version: Input should be 'v3.0' or 'v3.1'" in errors["doc_md"]


def test_dags_pass_airflow_3_lint():
    result = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", "--select", "AIR3",
                             str(REPO_ROOT / "dags"), str(REPO_ROOT / "plugins" / "clever" / "dag_factory.py"),
                             str(REPO_ROOT / "plugins" / "clever" / "report_dag.py")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("bad", [{"slug": "x", "api_version": "v2.0"}, {"slug": "x", "endpoints": ["students"]},
                                 {"slug": "x", "page_size": 20000}])
def test_config_rejects_what_clever_would_refuse(tmp_path, bad):
    from clever.config import ConfigError, load_districts

    path = tmp_path / "d.yml"
    path.write_text(yaml.safe_dump({"districts": [bad]}))
    with pytest.raises(ConfigError, match="x"):
        load_districts(path)


@pytest.mark.parametrize("slug", ["demo\n", "Demo", "1demo", "de-mo", "", "d" * 64])
def test_config_rejects_a_slug_that_is_not_a_plain_name(tmp_path, slug):
    from clever.config import ConfigError, load_districts

    path = tmp_path / "d.yml"
    path.write_text(yaml.safe_dump({"districts": [{"slug": slug}]}))
    with pytest.raises(ConfigError, match="must be lower-case letters"):
        load_districts(path)


@pytest.mark.parametrize("days", [-1, "7", True, 1.5])
def test_config_rejects_a_retention_that_is_not_whole_days(tmp_path, days):
    from clever.config import ConfigError, load_districts

    path = tmp_path / "d.yml"
    path.write_text(yaml.safe_dump({"districts": [{"slug": "x", "landing_retention_days": days}]}))
    with pytest.raises(ConfigError, match="landing_retention_days"):
        load_districts(path)


def test_retention_defaults_to_a_week_and_null_keeps_everything(tmp_path):
    from clever.config import load_districts

    path = tmp_path / "d.yml"
    path.write_text(yaml.safe_dump({"defaults": {"landing_retention_days": None},
                                    "districts": [{"slug": "kept"}, {"slug": "pruned", "landing_retention_days": 0}]}))
    assert [d.landing_retention_days for d in load_districts(path)] == [None, 0]
    path.write_text(yaml.safe_dump({"districts": [{"slug": "x"}]}))
    assert load_districts(path)[0].landing_retention_days == 7


PLUGINS_SCRIPT = r"""
import json, sys
from pathlib import Path
from airflow import plugins_manager, settings
plugins_manager.ensure_plugins_loaded()
project = {p.stem for p in Path(sys.argv[1]).rglob("*.py")}
heavy = {'dbt', 'great_expectations', 'pandas', 'matplotlib', 'psycopg', 'requests'}
print(json.dumps({"plugins_folder": settings.PLUGINS_FOLDER,
                  "project_modules": sorted(m for m in sys.modules if m in project),
                  "heavy": sorted({m.split('.')[0] for m in sys.modules} & heavy),
                  "errors": plugins_manager.get_import_errors()}))
"""


def test_the_plugin_manager_executes_no_project_module(tmp_path):
    # Airflow's plugin manager imports every .py under the plugins folder as a top-level
    # module, in every component and task process; plugins/.airflowignore keeps it out.
    env = airflow_env({"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "airflow")})
    result = subprocess.run([sys.executable, "-c", PLUGINS_SCRIPT, str(REPO_ROOT / "plugins" / "clever")], env=env,
                            capture_output=True, text=True, check=True, timeout=300)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["plugins_folder"] == str(REPO_ROOT / "plugins")
    assert loaded == {**loaded, "project_modules": [], "heavy": [], "errors": {}}


TIMED_PARSE_SCRIPT = r"""
import json, sys, time
started = time.monotonic()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"seconds": time.monotonic() - started, "dags": len(bag.dags), "errors": len(bag.import_errors)}))
"""
# The DAG processor must parse the DAG folder well within Airflow's default
# dagbag_import_timeout (30 s), with room for a loaded machine.
FLEET_PARSE_BUDGET_SECONDS = 20


def test_a_fleet_of_a_thousand_districts_parses_within_budget_and_a_task_builds_only_its_dag(tmp_path):
    config = tmp_path / "districts.yml"
    config.write_text(yaml.safe_dump({"districts": [{"slug": f"district_{i:04d}"} for i in range(1000)]}))
    env = airflow_env({"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "airflow"),
                       "CLEVER_DISTRICTS_FILE": str(config)})

    def parse(extra: dict[str, str]) -> dict:
        result = subprocess.run([sys.executable, "-c", TIMED_PARSE_SCRIPT, str(REPO_ROOT / "dags")],
                                env={**env, **extra}, capture_output=True, text=True, check=True, timeout=300)
        return json.loads(result.stdout.strip().splitlines()[-1])

    processor = parse({})
    assert processor["dags"] == 1002 and processor["errors"] == 0  # every district, the report and health DAGs
    assert processor["seconds"] < FLEET_PARSE_BUDGET_SECONDS, processor
    # A task process parses the file to run one task of one DAG: only that DAG is built.
    task = parse({"_AIRFLOW_PARSING_CONTEXT_DAG_ID": "clever_sync_district_0500"})
    assert task["dags"] == 3 and task["errors"] == 0  # its district's DAG; the report and health DAG files
