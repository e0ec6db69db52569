"""Runs the dbt project (staging → snapshots → marts → tests) with dbt's own Python API.

dbtRunner runs in the task's process, so dbt's results come back as objects (no log
scraping) and a failing model fails the task with dbt's message. Builds are serialised
across districts with a PostgreSQL advisory lock: snapshots and marts are shared
tables, and two concurrent snapshot merges could both insert the same new version.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from clever.connections import WarehouseTarget

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = Path(os.environ.get("CLEVER_DBT_PROJECT_DIR") or REPO_ROOT / "dbt_project")
ARTIFACTS_DIR = Path(os.environ.get("CLEVER_ARTIFACTS_DIR") or REPO_ROOT / ".local" / "artifacts")
_BUILD_LOCK_KEY = 0x0C1E7E13


class DbtError(RuntimeError):
    """dbt reported a failure; the message lists the failing nodes."""


@dataclass(frozen=True)
class DbtOutcome:
    started_at_epoch: float
    seconds: float
    statuses: dict[str, str]  # unique_id -> status


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


class BuildLockTimeout(DbtError):
    """Another district's dbt build held the lock for longer than we may wait."""


@contextmanager
def build_lock(conninfo: str, timeout_seconds: int = 3600) -> Iterator[None]:
    """Hold the warehouse-wide build lock, waiting up to ``timeout_seconds`` for it.

    Builds take it so two districts' dbt runs never interleave; approvals take it so a
    build never sees one district's sections and enrollments from different runs."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        started = time.monotonic()
        conn.execute(f"SET lock_timeout = '{int(timeout_seconds)}s'")
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (_BUILD_LOCK_KEY,))
        except psycopg.errors.LockNotAvailable:
            raise BuildLockTimeout(
                f"another district's dbt build held the warehouse build lock for over {timeout_seconds}s; "
                "re-run this DAG, or let the next build apply an extraction that was already approved") from None
        waited = time.monotonic() - started
        if waited > 1:
            log.info("waited %.0fs for another district's dbt build", waited)
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_BUILD_LOCK_KEY,))


def target_path() -> Path:
    return ARTIFACTS_DIR / "dbt_target"


def run_dbt(target: WarehouseTarget, args: list[str]) -> DbtOutcome:
    """Invoke dbt with ``args`` (e.g. ["build"]) against ``target``; raise DbtError on failure."""
    from dbt.cli.main import dbtRunner

    command = [
        *args,
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(target_path()),
        "--log-path", str(ARTIFACTS_DIR / "dbt_logs"),
    ]
    started_epoch = time.time()
    started = time.monotonic()
    with _environment(target.dbt_env()):
        result = dbtRunner().invoke(command)
    statuses: dict[str, str] = {}
    failures: list[str] = []
    for node_result in getattr(result.result, "results", None) or []:
        status = str(getattr(node_result.status, "value", node_result.status))
        unique_id = node_result.node.unique_id
        statuses[unique_id] = status
        if status in {"error", "fail", "runtime error"}:
            failures.append(f"{unique_id}: {status}: {node_result.message}")
    if not result.success:
        detail = "; ".join(failures) or str(result.exception or "dbt reported failure")
        raise DbtError(f"dbt {' '.join(args)} failed: {detail}")
    return DbtOutcome(started_epoch, time.monotonic() - started, statuses)
