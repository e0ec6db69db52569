"""Airflow DAG: clever_discovery, onboarding districts from Clever's list of the
application's district tokens (when enabled in config/districts.yml).

Thin on purpose: the DAG and its task live in plugins/clever/ (discovery_dag, discovery).
"""

from clever.config import load_discovery

settings = load_discovery()
if settings.enabled:
    from clever.discovery_dag import build_discovery_dag

    dag = build_discovery_dag(settings)
