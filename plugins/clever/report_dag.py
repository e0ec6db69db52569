"""The ``clever_rollover_report`` DAG: the rollover report (HTML with charts) per district.

It runs whenever a district's sync has rebuilt the marts (asset ``clever_marts``), for the
districts whose builds triggered it, and on manual trigger for the districts chosen in the
form (default: every configured district). One mapped task per district writes
``rollover_<slug>.html`` under $CLEVER_REPORTS_DIR (default .local/artifacts/reports).
The work is in clever.rollover_report, imported only when the task runs: pandas and
matplotlib stay out of DAG parsing.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, get_current_context, task

from clever.assets import MARTS
from clever.config import load_districts_tolerant

DAG_ID = "clever_rollover_report"


def build_rollover_report_dag() -> DAG:
    slugs = [d.slug for d in load_districts_tolerant()[0]]  # a bad entry is named by clever_config_errors
    with DAG(
        dag_id=DAG_ID,
        description="Rollover report (HTML with charts) per district, from clever_marts.rpt_rollover",
        schedule=[MARTS],
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args={"owner": "clever-warehouse", "retries": 1},
        params={
            "districts": Param(
                [], type="array", items={"type": "string", "enum": slugs} if slugs else {"type": "string"},
                description="Districts to report (default: those whose sync triggered this run, else every "
                            "configured district)."),
            "comparison": Param("school_year", type="string", enum=["school_year", "term"],
                                description="Compare school year with school year, or term with term."),
            "from_period": Param(None, type=["null", "string"],
                                 description="Earlier period, e.g. 2025-26 (default: the latest rollover begun)."),
        },
        tags=["clever", "reports"],
        doc_md=__doc__,
    ) as dag:

        @task
        def plan_districts() -> list[str]:
            """The trigger form's districts, else those whose build fired the asset, else all."""
            context = get_current_context()
            requested = list(context["params"].get("districts") or [])
            if requested:
                return sorted(set(requested))
            built = {event.extra.get("district")
                     for events in (context.get("triggering_asset_events") or {}).values()
                     for event in events}
            return sorted(d for d in built if d) or slugs

        @task(map_index_template="{{ district }}")
        def render(district: str) -> dict[str, str | None]:
            from clever.connections import warehouse_target
            from clever.rollover_report import write_report

            context = get_current_context()
            context["district"] = district  # type: ignore[typeddict-unknown-key]
            params = context["params"]
            result = write_report(warehouse_target().conninfo, district, params.get("comparison") or "school_year",
                                  params.get("from_period"))
            span = f"{result.from_period} -> {result.to_period}" if result.from_period else "nothing to compare yet"
            print(f"Rollover report for {district} ({span}): {result.path}")
            return {"path": str(result.path), "from_period": result.from_period, "to_period": result.to_period}

        render.expand(district=plan_districts())
    return dag
