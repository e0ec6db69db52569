"""Airflow DAG: clever_district_health, hourly, flags and alerts districts whose data is
not fresh (no approved extraction within their schedule plus a margin).

Thin on purpose: the DAG and its task live in plugins/clever/ (health_dag, health).
"""

from clever.health_dag import build_district_health_dag

dag = build_district_health_dag()
