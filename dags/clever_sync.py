"""Airflow DAGs: one Clever sync DAG per district in config/districts.yml (or
$CLEVER_DISTRICTS_FILE).

Kept thin on purpose: the factory and every task's logic live in plugins/clever/.
(Airflow's safe mode parses only files that mention "airflow" and "dag"; this one does.)
"""

from clever.dag_factory import build_dags

globals().update(build_dags())
