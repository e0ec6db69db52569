"""Builds one Airflow DAG per configured district: ``clever_sync_<slug>``.

Parse time stays light: only airflow.sdk, yaml and this package's config are imported
here; every task imports its heavy work (psycopg, requests, dbt, GX) when it runs.

Task flow: plan_endpoints → start_run → extract[endpoint] (mapped, parallel) → close_extraction →
validate → approve → build (dbt) → summarize and prune_landing. ``summarize`` always
runs, records the run (also a failed one) in clever_landing.run_summaries, and fails the
DAG run if any step before it failed. ``prune_landing`` runs after a successful build and
deletes older runs' landing rows that nothing reads any more (clever.retention).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, TriggerRule, get_current_context, task

from clever.assets import MARTS
from clever.config import DistrictConfig, load_districts
from clever.endpoints import ENDPOINTS

DEFAULT_ARGS = {
    "owner": "clever-warehouse",
    "retries": 0,
}


def _district_params(district: DistrictConfig) -> dict[str, Param]:
    return {
        "full_refresh": Param(
            False, type="boolean",
            description="Validate every record, not only those new or changed since the last approved "
                        "extraction, and run dbt with --full-refresh (rebuilds incremental models). Snapshot "
                        "history is never rebuilt or dropped.",
        ),
        "allow_mass_archive": Param(
            False, type="boolean",
            description="Let this run archive more than the district's mass-archive threshold "
                        "(only after checking that Clever really stopped sharing those records).",
        ),
        "endpoints": Param(
            list(district.endpoints), type="array",
            items={"type": "string", "enum": list(ENDPOINTS)},
            description="Clever endpoints to sync (default: all configured).",
        ),
    }


@contextmanager
def _failing_run(conninfo: str, sync_run_id: int, step: str) -> Iterator[None]:
    """Mark the sync run failed, naming the step, if the block raises."""
    try:
        yield
    except Exception as exc:
        from clever import pipeline

        pipeline.fail_run(conninfo, sync_run_id, step, exc)
        raise


def build_district_dag(district: DistrictConfig) -> DAG:
    with DAG(
        dag_id=district.dag_id,
        description=f"Clever Secure Sync for {district.name} ({district.api_version})",
        schedule=district.schedule,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        params=_district_params(district),
        tags=["clever", f"district:{district.slug}"],
        doc_md=__doc__,
    ) as dag:

        @task
        def plan_endpoints() -> list[str]:
            """The endpoints this run extracts: the trigger's `endpoints` param, else the config's."""
            from clever.endpoints import check_endpoints

            requested = get_current_context()["params"].get("endpoints") or district.endpoints
            return list(check_endpoints(list(requested)))

        @task
        def start_run(endpoints: list[str]) -> int:
            from clever import pipeline
            from clever.connections import warehouse_target

            context = get_current_context()
            return pipeline.start_run(
                warehouse_target().conninfo, district, endpoints,
                external_run_id=context["run_id"], params=dict(context["params"]),
            )

        @task(retries=district.extract_retries,
              retry_delay=timedelta(seconds=district.extract_retry_delay_seconds),
              map_index_template="{{ endpoint }}", pool=district.extract_pool)
        def extract(endpoint: str, sync_run_id: int) -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowFailException

            from clever import pipeline
            from clever.client import CleverAuthError
            from clever.connections import clever_endpoint, warehouse_target
            from clever.extract import ExtractionError

            get_current_context()["endpoint"] = endpoint  # type: ignore[index]
            api = clever_endpoint(district)
            try:
                return pipeline.extract(warehouse_target().conninfo, district, sync_run_id, endpoint,
                                        api.base_url, api.token)
            except ExtractionError as exc:
                if isinstance(exc.__cause__, CleverAuthError):  # a retry cannot fix a revoked token
                    raise AirflowFailException(str(exc)) from exc
                raise

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def close_extraction(sync_run_id: int) -> str:
            from clever import pipeline
            from clever.connections import warehouse_target

            return pipeline.close_extraction(warehouse_target().conninfo, sync_run_id)

        @task
        def validate(sync_run_id: int) -> dict[str, Any]:
            from clever import validation
            from clever.connections import warehouse_target

            conninfo = warehouse_target().conninfo
            full = bool(get_current_context()["params"].get("full_refresh"))
            with _failing_run(conninfo, sync_run_id, "validate"):
                return validation.validate_run(conninfo, sync_run_id,
                                               quarantine_threshold=district.quarantine_threshold,
                                               quarantine_floor=district.quarantine_floor, full=full)

        @task(pool=district.build_pool)
        def approve(sync_run_id: int) -> list[str]:
            from clever import pipeline
            from clever.connections import warehouse_target

            conninfo = warehouse_target().conninfo
            allow = bool(get_current_context()["params"].get("allow_mass_archive"))
            with _failing_run(conninfo, sync_run_id, "approve"):
                return pipeline.approve(conninfo, sync_run_id, threshold=district.mass_archive_threshold,
                                        floor=district.mass_archive_floor, allow_mass_archive=allow,
                                        lock_timeout_seconds=district.build_lock_timeout_seconds)

        @task(pool=district.build_pool, outlets=[MARTS])  # success schedules clever_rollover_report
        def build(sync_run_id: int) -> dict[str, Any]:
            from clever import pipeline
            from clever.connections import warehouse_target

            target = warehouse_target()
            context = get_current_context()
            full_refresh = bool(context["params"].get("full_refresh"))
            with _failing_run(target.conninfo, sync_run_id, "build"):
                result = pipeline.build(target, full_refresh=full_refresh,
                                        lock_timeout_seconds=district.build_lock_timeout_seconds, district=district)
            context["outlet_events"][MARTS].extra = {"district": district.slug, "sync_run_id": sync_run_id}
            return result

        @task
        def prune_landing() -> dict[str, Any]:
            """Delete older runs' landing rows that nothing reads any more (clever.retention)."""
            from clever.connections import warehouse_target
            from clever.retention import prune_landing as prune

            pruned = prune(warehouse_target().conninfo, district.slug, district.landing_retention_days)
            return {"rows": sum(p.rows for p in pruned),
                    "extractions": [{"endpoint": p.endpoint, "sync_run_id": p.sync_run_id, "rows": p.rows}
                                    for p in pruned]}

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def summarize(sync_run_id: int) -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowFailException

            from clever import pipeline
            from clever.connections import warehouse_target

            # Pulled, not passed: a failed step leaves no XCom and summarize must still run.
            ti = get_current_context()["ti"]
            build_result = ti.xcom_pull(task_ids="build")
            started = (build_result or {}).get("started_at")
            data_docs = pipeline.data_docs_hint(district.slug, sync_run_id)
            summary = pipeline.summarize(warehouse_target().conninfo, sync_run_id, started,
                                         extra={"data_docs": data_docs, "dbt_docs": pipeline.dbt_docs_hint()})
            print(pipeline.format_summary(summary))
            if started is None:
                if summary["approved_endpoints"]:
                    detail = ("its extraction was approved but the dbt build failed; the next successful build "
                              "(of any district) applies it")
                else:
                    detail = "it stopped before approval, so nothing from it was archived or changed"
                raise AirflowFailException(
                    f"district {district.slug!r}: sync run {sync_run_id} failed: {detail}. "
                    f"Error: {summary.get('error') or 'see the failed task log'}")
            return summary

        endpoints = plan_endpoints()
        sync_run_id = start_run(endpoints)
        extracted = extract.partial(sync_run_id=sync_run_id).expand(endpoint=endpoints)
        closed = close_extraction(sync_run_id)
        extracted >> closed
        validated = validate(sync_run_id)
        closed >> validated
        approved = approve(sync_run_id)
        validated >> approved
        built = build(sync_run_id)
        approved >> built
        built >> summarize(sync_run_id)
        built >> prune_landing()  # only after a successful build; a failure fails the run
    return dag


def build_dags() -> dict[str, DAG]:
    """Every configured district's DAG, by dag_id (the DAG file puts them in globals())."""
    return {d.dag_id: build_district_dag(d) for d in load_districts()}
