"""Where the repository's parts are: one definition for the runtime, the dev kit and the
tests. Deployments may move the dbt project and the artifacts (environment variables)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGINS_DIR = REPO_ROOT / "plugins"
DEVKIT_DIR = REPO_ROOT / "devkit"
DAGS_DIR = REPO_ROOT / "dags"
EXPECTATIONS_DIR = REPO_ROOT / "expectations"
LOCAL_DIR = REPO_ROOT / ".local"  # state of local runs: the embedded warehouse, Airflow's home, benches
DBT_PROJECT_DIR = Path(os.environ.get("CLEVER_DBT_PROJECT_DIR") or REPO_ROOT / "dbt_project")
ARTIFACTS_DIR = Path(os.environ.get("CLEVER_ARTIFACTS_DIR") or LOCAL_DIR / "artifacts")
