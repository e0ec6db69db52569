"""`make demo`: the whole pipeline on the shipped sample district, end to end.

Seeds the application's own data (schema ``app``: the accounts, schools and progress the
application had before Clever, and some admin edits) for the sample district, starts the
Clever API simulator with the sample "Certification ISD", points the `clever_demo`
connection at it (unless AIRFLOW_CONN_CLEVER_DEMO is already set), runs a real Airflow
sync of the `demo` district into the warehouse (the embedded one unless a
`clever_warehouse` connection is configured), renders the rollover report (the sample
district spans the 2025-26 -> 2026-27 rollover) with the real `clever_rollover_report`
DAG, triggers one more sync from the Airflow UI in headless Chromium and screenshots it
(`--no-ui` skips that), builds the dbt docs, and prints what landed where and how the
application's records matched.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from clever.connections import redacted
from clever.paths import REPO_ROOT
from clever_devkit.cli import run_main
from clever_devkit.demo_app_data import iter_summary_lines, seed_demo_app_data
from clever_devkit.runner import BIN_DIR, airflow_env, demo_simulator, warehouse_url, watch_dag

MARTS = ("dim_districts", "dim_schools", "dim_users", "dim_sections", "dim_terms", "dim_courses", "fct_enrollments")


def mart_summary(conninfo: str) -> list[str]:
    lines = []
    with psycopg.connect(conninfo) as conn:
        for mart in MARTS:
            total, archived = conn.execute(
                f"SELECT count(*), count(*) FILTER (WHERE is_archived) FROM clever_marts.{mart}"
            ).fetchone()
            lines.append(f"  clever_marts.{mart:<16} {total:>6} rows  ({archived} archived)")
    return lines


def build_dbt_docs(conninfo: str) -> Path:
    """`dbt docs generate` for the project, against the same warehouse."""
    from clever.connections import WarehouseTarget
    from clever.dbt_runner import run_dbt, target_path

    run_dbt(WarehouseTarget.from_conninfo(conninfo), ["docs", "generate"])
    return target_path() / "index.html"


def latest_data_docs(conninfo: str, district_slug: str = "demo") -> str | None:
    """The Data Docs of the district's latest run that validated anything (a run with
    nothing new or changed, like the UI walkthrough's, has none)."""
    from clever.summary import data_docs_hint

    with psycopg.connect(conninfo) as conn:
        runs = conn.execute("SELECT sync_run_id FROM clever_landing.sync_runs WHERE district_slug = %s "
                            "ORDER BY sync_run_id DESC", (district_slug,)).fetchall()
    return next((hint for (run,) in runs if (hint := data_docs_hint(district_slug, run))), None)


def print_summary(conninfo: str, docs: Path, seconds: float, airflow_home: str) -> None:
    """What landed where. The warehouse URL is printed without its password."""
    print("\n" + "=" * 72)
    print(f"Demo sync of the sample district finished in {seconds:.0f}s.")
    print(f"Warehouse: {redacted(conninfo)}")
    print("\n".join(mart_summary(conninfo)))
    print(f"dbt docs:  {docs}   (serve: cd dbt_project && {BIN_DIR}/dbt docs serve "
          f"--target-path {docs.parent} --profiles-dir .)")
    print(f"Airflow:   `make airflow` opens the UI with this DAG (AIRFLOW_HOME={airflow_home}).")
    print(f"Re-run:    make sync DISTRICT=demo    Schema docs: {REPO_ROOT / 'docs' / 'SCHEMA.md'}")


def ui_walkthrough(env: dict[str, str]) -> list[Path] | None:
    """The on-demand sync a person starts from the Airflow UI: `airflow standalone` on a
    free port, headless Chromium logs in, triggers clever_sync_demo from its form and waits
    for it. Returns the screenshots ([] when no browser can be had), None if the run failed."""
    from clever.dbt_runner import ARTIFACTS_DIR
    from clever_devkit.pg_local import free_port
    from clever_devkit.system_tools import ToolMissing, find_or_install
    from clever_devkit.ui_walkthrough import AirflowUIError, admin_password, running_airflow, walk_through

    try:
        chromium = find_or_install("chromium")
    except ToolMissing as exc:
        print(f"Skipping the Airflow UI walkthrough: {exc}", file=sys.stderr)
        return []
    out_dir = ARTIFACTS_DIR / "screenshots"
    run_id = f"demo_ui_{datetime.now(UTC):%Y%m%dT%H%M%S}"
    # Only the triggered run: no scheduled (or asset-triggered) run competes with it.
    ui_env = {**env, "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False", "AIRFLOW__CORE__PARALLELISM": "4"}
    print(f"\nAirflow UI walkthrough: starting airflow standalone (log: {out_dir / 'airflow_standalone.log'})",
          flush=True)
    try:
        with running_airflow(free_port(), ui_env, out_dir / "airflow_standalone.log") as base_url:
            seen = walk_through(chromium, base_url, admin_password(Path(env["AIRFLOW_HOME"])), "clever_sync_demo",
                                {"full_refresh": False}, run_id, out_dir, expected_dags={"clever_sync_demo"})
    except AirflowUIError as exc:
        print(f"Airflow UI walkthrough FAILED: {exc}", file=sys.stderr)
        return None
    if seen.run_state != "success":
        print(f"Airflow UI walkthrough: run {run_id} ended {seen.run_state}; see {out_dir}", file=sys.stderr)
        return None
    return seen.screenshots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clever-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sim-port", type=int, default=8765)
    parser.add_argument("--docs-only", action="store_true", help="only build the dbt docs")
    parser.add_argument("--no-ui", action="store_true",
                        help="skip the Airflow UI walkthrough (airflow standalone + headless Chromium)")
    args = parser.parse_args(argv)

    env = airflow_env()
    if args.docs_only:
        print(f"dbt docs: {build_dbt_docs(warehouse_url(env))}")
        return 0
    started = time.monotonic()
    conninfo = warehouse_url(env)  # the one the run's tasks use
    seeded = seed_demo_app_data(conninfo)
    print("Application data (schema app): " + ", ".join(f"{n} new {table}" for table, n in seeded.items()))
    with demo_simulator(env, args.sim_port):
        for dag_id, conf, what in (("clever_sync_demo", None, "Demo sync"),
                                   ("clever_rollover_report", {"districts": ["demo"]}, "Rollover report")):
            run = watch_dag(dag_id, conf=conf, env=env)
            if not run.succeeded:
                print(f"{what} FAILED; the failed task and its error are in Airflow's log: {run.log_path}",
                      file=sys.stderr)
                return run.returncode or 1
        screenshots = [] if args.no_ui else ui_walkthrough(env)
        if screenshots is None:
            return 1
    from clever.rollover_report import REPORTS_DIR

    docs = build_dbt_docs(conninfo)
    print_summary(conninfo, docs, time.monotonic() - started, env["AIRFLOW_HOME"])
    print(f"Data Docs: {latest_data_docs(conninfo)}   (Great Expectations: this run's validation)")
    print(f"Rollover:  {REPORTS_DIR / 'rollover_demo.html'}   (open it in a browser; `make report` renders it again)")
    for shot in screenshots:
        print(f"Screenshot: {shot}")
    print("BI access: the read-only role clever_bi reads clever_marts and clever_reports "
          "(GRANT clever_bi TO <your BI login>)")
    print("Matching the application's records (clever_marts.rpt_match_summary; review: rpt_match_ambiguous, "
          "rpt_match_unmatched):")
    print("\n".join(iter_summary_lines(conninfo)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
