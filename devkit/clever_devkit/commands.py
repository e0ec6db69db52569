"""Commands on the warehouse from a shell, finding it as ``make sync`` does
(clever_devkit.runner.warehouse_url):

    python -m clever_devkit.commands report [--district SLUG ...] [--comparison school_year|term]
        [--from-period 2025-26] [--out-dir DIR]     (make report)
    python -m clever_devkit.commands deploy         (make deploy)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from clever_devkit.cli import run_main
from clever_devkit.runner import warehouse_url


def report(args: argparse.Namespace) -> int:
    from clever.config import load_districts
    from clever.rollover_report import write_report

    districts = args.district or [d.slug for d in load_districts()]
    conninfo = warehouse_url()
    for district in districts:
        result = write_report(conninfo, district, args.comparison, args.from_period, args.out_dir)
        span = f"{result.from_period} -> {result.to_period}" if result.from_period else "nothing to compare yet"
        print(f"Rollover report for {district} ({span}): {result.path}")
    return 0


def deploy(args: argparse.Namespace) -> int:
    from clever import dbt_runner

    return dbt_runner.main(["deploy", "--url", warehouse_url(), "--lock-timeout", str(args.lock_timeout)])


def main(argv: list[str] | None = None) -> int:
    from clever.rollover_report import COMPARISONS, REPORTS_DIR

    parser = argparse.ArgumentParser(prog="clever-commands", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rollover = commands.add_parser("report", help="the rollover report of each district (HTML)")
    rollover.add_argument("--district", action="append", help="district slug (repeatable; default: every configured)")
    rollover.add_argument("--comparison", choices=COMPARISONS, default="school_year")
    rollover.add_argument("--from-period", default=None, help="e.g. 2025-26 (default: the latest rollover begun)")
    rollover.add_argument("--out-dir", type=Path, default=REPORTS_DIR)
    rollover.set_defaults(run=report)
    deploying = commands.add_parser("deploy", help="deploy the dbt project now, if it is not deployed yet")
    deploying.add_argument("--lock-timeout", type=int, default=3600)
    deploying.set_defaults(run=deploy)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(run_main(main))
