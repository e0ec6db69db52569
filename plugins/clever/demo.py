"""`make demo`: the whole pipeline on the shipped sample district, end to end.

Starts the Clever API simulator with the sample "Certification ISD", points the
`clever_demo` connection at it (unless AIRFLOW_CONN_CLEVER_DEMO is already set), runs a
real Airflow sync of the `demo` district into the warehouse (the embedded one unless a
`clever_warehouse` connection is configured), builds the dbt docs, and prints what
landed where.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg

from clever.runner import BIN_DIR, REPO_ROOT, airflow_env, demo_simulator, run_dag
from clever.warehouse import redacted, warehouse_url

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clever-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sim-port", type=int, default=8765)
    parser.add_argument("--docs-only", action="store_true", help="only build the dbt docs")
    args = parser.parse_args(argv)

    env = airflow_env()
    if args.docs_only:
        print(f"dbt docs: {build_dbt_docs(warehouse_url(env))}")
        return 0
    started = time.monotonic()
    with demo_simulator(env, args.sim_port):
        result = run_dag("clever_sync_demo", env=env)
    if result.returncode != 0:
        print("\nDemo sync FAILED; the task logs above say why.", file=sys.stderr)
        return result.returncode
    conninfo = warehouse_url(env)  # the one the run's tasks used
    docs = build_dbt_docs(conninfo)
    print_summary(conninfo, docs, time.monotonic() - started, env["AIRFLOW_HOME"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
