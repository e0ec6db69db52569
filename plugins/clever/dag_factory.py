"""Builds one Airflow DAG per configured district: ``clever_sync_<slug>``.

Parse time stays light: only airflow.sdk, yaml and this package's config are imported
here; every task imports its heavy work (psycopg, requests, dbt, GX) when it runs.

Task flow (clever.steps, one task per step): start_run → extract (every endpoint,
several at a time, then the run is closed) → validate → approve → build (dbt) →
summarize. Six task instances a run: in a
fleet each one costs a scheduler decision, an executor slot and a process start-up, so
steps that need no task of their own share one (docs/ARCHITECTURE.md#airflow).
``summarize`` always runs: it closes a run whose extraction failed, records the run
(also a failed one) in clever_landing.run_summaries, prunes older landing rows after a
successful build (clever.retention), and fails the DAG run if any step before it failed.
A district with ``sync_mode: events`` has the same tasks on its ``events_schedule``:
``start_run`` decides whether the run reads Clever's events or is a full sync
(clever.events), and the trigger's ``sync_mode`` param can ask for either.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, TriggerRule, get_current_context, get_parsing_context, task

from clever.assets import MARTS
from clever.catalog import ENDPOINTS
from clever.config import ConfigError, DistrictConfig, load_discovery, load_districts_tolerant
from clever.discovery_dag import DAG_ID as DISCOVERY_DAG_ID
from clever.discovery_dag import build_discovery_dag

log = logging.getLogger(__name__)

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
            description="Let this run archive or change more of a data type than the district's "
                        "mass-archive and mass-update thresholds (only after checking that Clever really "
                        "stopped sharing, or changed, those records).",
        ),
        "endpoints": Param(
            list(district.endpoints), type="array",
            items={"type": "string", "enum": list(ENDPOINTS)},
            description="Clever endpoints to sync (default: all configured; an events run reads every one).",
        ),
        "sync_mode": Param(
            "auto", type="string", enum=["auto", "full", "events"],
            description="auto: a district with sync_mode events applies Clever's events since its last run, or "
                        "runs a full sync when one is due or events cannot be used; full: a full (non-events) "
                        "sync now; events: events even if a scheduled full sync is due.",
        ),
        "archive_disconnected": Param(
            False, type="boolean",
            description="Archive every record of this district without reading Clever: only for a disconnected "
                        "district (the health DAG triggers it when the district's disconnect_archive_after_days "
                        "has passed); refused for a connected one. A reconnect restores the records.",
        ),
    }


class StepTerminated(KeyboardInterrupt):
    """SIGTERM reached a running step. Not an Exception, so no ``except Exception`` in the
    step swallows it; an interrupt, so dbt cancels its running queries on the way out."""


@contextmanager
def _stops_on_sigterm(district: DistrictConfig, step: str) -> Iterator[None]:
    """Stop the step at once on SIGTERM, failed without retries. ``airflow dags test``
    (``make sync``) runs tasks in its own process, where Airflow's handler only calls the
    operator's on_kill and the step would run on; a worker's supervisor kills the task
    after a grace period, and this lets it record its failure first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(signum: int, frame: Any) -> None:
        if callable(previous):
            previous(signum, frame)  # Airflow's: the operator's on_kill
        raise StepTerminated(f"district {district.slug!r}: {step} stopped by SIGTERM")

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except StepTerminated as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{exc}; nothing from this run is archived, and the next run starts "
                                   "over where it must") from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _context(district: DistrictConfig, sync_run_id: int | None = None, **results: Any) -> Any:
    """The steps' context (clever.steps.SyncContext) for this task: the warehouse from the
    Airflow connection, the trigger's params and run id, the results of earlier tasks."""
    from clever.connections import warehouse_target
    from clever.steps import RunParams, SyncContext

    context = get_current_context()
    return SyncContext(target=warehouse_target(), district=district, params=RunParams.from_mapping(context["params"]),
                       sync_run_id=sync_run_id, external_run_id=context["run_id"],
                       results={step: result for step, result in results.items() if result is not None})


def _run(district: DistrictConfig, step: str, sync_run_id: int | None = None, **results: Any) -> Any:
    """Run a step (clever.steps) as this task, stopping at once on SIGTERM."""
    from clever import steps

    with _stops_on_sigterm(district, step):
        return steps.run_step(_context(district, sync_run_id, **results), step)


def _failure_alerts(district: DistrictConfig) -> list:
    """summarize fails whenever the run failed or was held: its failure is the alert."""
    if not district.alerts.enabled:
        return []
    from clever.alerts import SyncFailedNotifier

    return [SyncFailedNotifier(district)]


def build_district_dag(district: DistrictConfig) -> DAG:
    limits = district.time_limits()  # each task's execution_timeout (config.DistrictConfig.time_limits)
    with DAG(
        dag_id=district.dag_id,
        description=f"Clever Secure Sync for {district.name} ({district.api_version})"
                    + (" - DISCONNECTED: not scheduled" if district.connection_status == "disconnected" else ""),
        schedule=district.dag_schedule,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=district.dagrun_timeout(),
        default_args=DEFAULT_ARGS,
        params=_district_params(district),
        # A discovered district syncs without anyone turning it on (where DAGs start paused).
        is_paused_upon_creation=False if district.source == "discovered" else None,
        tags=["clever", f"district:{district.slug}", *(["discovered"] if district.source == "discovered" else []),
              *(["disconnected"] if district.connection_status == "disconnected" else [])],
        doc_md=__doc__,
    ) as dag:

        @task(execution_timeout=limits["start_run"])
        def start_run() -> int:
            """A new sync run of the trigger's `endpoints` param, else the config's."""
            return _run(district, "start_run")

        @task(retries=district.extract_retries, execution_timeout=limits["extract"],
              retry_delay=timedelta(seconds=district.extract_retry_delay_seconds), pool=district.extract_pool)
        def extract(sync_run_id: int) -> dict[str, Any]:
            """Every endpoint of the run not completed yet (a retry re-reads only those), then
            the run is closed: completed only if every endpoint is."""
            from airflow.sdk.exceptions import AirflowFailException

            from clever import pipeline
            from clever.connections import MissingConnection
            from clever.extract import ExtractionError

            try:
                return _run(district, "extract", sync_run_id)
            except MissingConnection as exc:  # fail now: no retry can add the connection
                raise AirflowFailException(str(exc)) from None
            except ExtractionError as exc:
                if pipeline.retrying_cannot_fix(exc):  # a revoked token: fail now, no retries
                    raise AirflowFailException(str(exc)) from exc
                raise

        @task(execution_timeout=limits["validate"])
        def validate(sync_run_id: int) -> dict[str, Any]:
            return _run(district, "validate", sync_run_id)

        @task(pool=district.build_pool, execution_timeout=limits["approve"])
        def approve(sync_run_id: int) -> list[str]:
            return _run(district, "approve", sync_run_id)

        # success schedules clever_rollover_report
        @task(pool=district.build_pool, outlets=[MARTS], execution_timeout=limits["build"])
        def build(sync_run_id: int) -> dict[str, Any]:
            result = _run(district, "build", sync_run_id)
            get_current_context()["outlet_events"][MARTS].extra = {"district": district.slug,
                                                                   "sync_run_id": sync_run_id}
            return result

        @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=limits["summarize"],
              on_failure_callback=_failure_alerts(district))
        def summarize(sync_run_id: int) -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowFailException

            # Pulled, not passed: a failed step leaves no XCom and summarize must still run.
            build_result = get_current_context()["ti"].xcom_pull(task_ids="build")
            summary = _run(district, "summarize", sync_run_id, build=build_result)  # prints it
            if not summary["built"]:
                if summary["approved_endpoints"]:
                    detail = ("its extraction was approved but the dbt build failed; the district's next "
                              "successful build applies it")
                else:
                    detail = "it stopped before approval, so nothing from it was archived or changed"
                raise AirflowFailException(
                    f"district {district.slug!r}: sync run {sync_run_id} failed: {detail}. "
                    f"Error: {summary.get('error') or 'see the failed task log'}")
            return summary

        sync_run_id = start_run()
        built = extract(sync_run_id) >> validate(sync_run_id) >> approve(sync_run_id) >> build(sync_run_id)
        built >> summarize(sync_run_id)
    return dag


CONFIG_ERRORS_DAG_ID = "clever_config_errors"


def build_dags() -> dict[str, DAG]:
    """Every configured district's DAG, by dag_id (the DAG file puts them in globals()).
    A bad district entry does not hide the others: their DAGs are built, and the DAG
    ``clever_config_errors`` names each bad entry (its runs fail saying what to fix).

    A task process parses the DAG file only to run one task: Airflow's parsing context
    names its DAG, and only that one is built, so a task's start-up does not grow with
    the fleet (the DAG processor still builds them all)."""
    districts, errors = load_districts_tolerant()
    wanted = get_parsing_context().dag_id
    if wanted:  # a task's process: only its DAG (a district's, discovery's or the config errors')
        districts = [d for d in districts if d.dag_id == wanted]
    dags = {d.dag_id: build_district_dag(d) for d in districts}
    if wanted in (None, DISCOVERY_DAG_ID):
        try:
            discovery = load_discovery()
        except ConfigError as exc:  # the districts' DAGs stay; clever_config_errors names it
            errors = {**errors, "discovery": str(exc)}
        else:
            if discovery.enabled:
                dags[DISCOVERY_DAG_ID] = build_discovery_dag(discovery)
    if errors and wanted in (None, CONFIG_ERRORS_DAG_ID):
        for error in errors.values():
            log.error("config/districts.yml: %s", error)
        dags[CONFIG_ERRORS_DAG_ID] = _config_errors_dag(errors)
    return dags


def _config_errors_dag(errors: dict[str, str]) -> DAG:
    listing = "\n".join(f"- {error}" for error in errors.values())
    with DAG(dag_id=CONFIG_ERRORS_DAG_ID, schedule="@daily", start_date=datetime(2024, 1, 1), catchup=False,
             description=(("1 district entry of the config has" if len(errors) == 1 else
                           f"{len(errors)} district entries of the config have")
                          + f" errors: {', '.join(errors)} (see its docs)")[:400],
             default_args=DEFAULT_ARGS, tags=["clever", "config"],
             doc_md=f"These entries of the districts config have errors; their DAGs are not built until they are "
                    f"fixed (the other districts sync as usual):\n\n{listing}") as dag:

        @task
        def report_config_errors() -> None:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException("districts config entries with errors (fix them in config/districts.yml):\n"
                                       + listing)

        report_config_errors()
    return dag
