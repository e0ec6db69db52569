"""The ``clever_district_health`` DAG: hourly, which districts have no fresh data
(clever.health), alerting the stale ones; and the disconnected districts whose policy
archives them now (clever.registry.archive_due), whose DAGs it triggers with
``archive_disconnected``. Parsing imports only airflow.sdk, the standard provider's
trigger operator and config."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task

DAG_ID = "clever_district_health"


def build_district_health_dag() -> DAG:
    with DAG(
        dag_id=DAG_ID,
        description="Stale districts: no approved extraction within their schedule plus a margin; alerts them",
        schedule="@hourly",
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args={"owner": "clever-warehouse", "retries": 1, "retry_delay": timedelta(minutes=5)},
        tags=["clever", "operations"],
        doc_md=__doc__,
    ) as dag:

        @task(execution_timeout=timedelta(minutes=15))
        def check_districts() -> list[str]:
            from clever.config import load_districts_tolerant
            from clever.connections import warehouse_target
            from clever.health import check_districts as check

            stale = check(warehouse_target().conninfo, load_districts_tolerant()[0])
            for state in stale:
                print(f"stale: {state.slug}: last approved extraction "
                      + ("never" if state.hours_since_approval is None else f"{state.hours_since_approval:.0f} h ago")
                      + f" (limit {state.limit_hours:g} h); last run: {state.last_run or 'none'}")
            print(f"{len(stale)} stale district(s)")
            return [state.slug for state in stale]

        @task(execution_timeout=timedelta(minutes=15))
        def disconnected_to_archive() -> list[dict[str, str]]:
            from datetime import UTC

            from clever.config import load_districts_tolerant
            from clever.connections import warehouse_target
            from clever.registry import archive_due

            due = archive_due(warehouse_target().conninfo, load_districts_tolerant()[0])
            print(f"{len(due)} disconnected district(s) to archive now: {[d.slug for d in due] or 'none'}")
            # One trigger a day at most: hourly checks do not pile up runs behind a slow or
            # failing archive run; a failed one is tried again the next day.
            day = datetime.now(UTC).strftime("%Y%m%d")
            return [{"trigger_dag_id": d.dag_id, "trigger_run_id": f"archive_disconnected__{day}"} for d in due]

        check_districts()
        TriggerDagRunOperator.partial(task_id="archive_disconnected", conf={"archive_disconnected": True},
                                      skip_when_already_exists=True, retries=0,
                                      ).expand_kwargs(disconnected_to_archive())
    return dag
