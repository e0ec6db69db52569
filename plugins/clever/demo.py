"""`make demo`: the whole pipeline on the shipped sample district, end to end.

Seeds the application's own data (schema ``app``: the accounts, schools and progress the
application had before Clever, and some admin edits) for the sample district, starts the
Clever API simulator with the sample "Certification ISD", points the `clever_demo`
connection at it (unless AIRFLOW_CONN_CLEVER_DEMO is already set), runs a real Airflow
sync of the `demo` district into the embedded warehouse, builds the dbt docs, and
prints what landed where and how the application's records matched.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg

from clever.demo_app_data import iter_summary_lines, seed_demo_app_data
from clever.runner import BIN_DIR, REPO_ROOT, airflow_env, demo_simulator, run_dag
from clever.warehouse import normalise_postgres_uri

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


def build_dbt_docs(env: dict[str, str]) -> Path:
    """`dbt docs generate` for the project, against the same warehouse."""
    from clever.connections import WarehouseTarget
    from clever.dbt_runner import run_dbt, target_path

    target = WarehouseTarget.from_conninfo(normalise_postgres_uri(env["AIRFLOW_CONN_CLEVER_WAREHOUSE"]))
    run_dbt(target, ["docs", "generate"])
    return target_path() / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clever-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sim-port", type=int, default=8765)
    parser.add_argument("--docs-only", action="store_true", help="only build the dbt docs")
    args = parser.parse_args(argv)

    env = airflow_env()
    if args.docs_only:
        print(f"dbt docs: {build_dbt_docs(env)}")
        return 0
    started = time.monotonic()
    conninfo = normalise_postgres_uri(env["AIRFLOW_CONN_CLEVER_WAREHOUSE"])
    seeded = seed_demo_app_data(conninfo)
    print("Application data (schema app): " + ", ".join(f"{n} new {table}" for table, n in seeded.items()))
    with demo_simulator(env, args.sim_port):
        result = run_dag("clever_sync_demo", env=env)
    if result.returncode != 0:
        print("\nDemo sync FAILED; the task logs above say why.", file=sys.stderr)
        return result.returncode
    docs = build_dbt_docs(env)

    print("\n" + "=" * 72)
    print(f"Demo sync of the sample district finished in {time.monotonic() - started:.0f}s.")
    print(f"Warehouse: {conninfo}")
    print("\n".join(mart_summary(conninfo)))
    print("Matching the application's records (clever_marts.rpt_match_summary; review: rpt_match_ambiguous, "
          "rpt_match_unmatched):")
    print("\n".join(iter_summary_lines(conninfo)))
    print(f"dbt docs:  {docs}   (serve: cd dbt_project && {BIN_DIR}/dbt docs serve "
          f"--target-path {docs.parent} --profiles-dir .)")
    print(f"Airflow:   `make airflow` opens the UI with this DAG (AIRFLOW_HOME={env['AIRFLOW_HOME']}).")
    print(f"Re-run:    make sync DISTRICT=demo    Schema docs: {REPO_ROOT / 'docs' / 'SCHEMA.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
