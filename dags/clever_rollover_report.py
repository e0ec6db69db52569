"""Airflow DAG: clever_rollover_report, the rollover report per district, rendered after
each district's sync rebuilds the marts and on demand.

Thin on purpose: the DAG and its task live in plugins/clever/ (report_dag, rollover_report).
"""

from clever.report_dag import build_rollover_report_dag

dag = build_rollover_report_dag()
