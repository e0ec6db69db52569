"""Runs the dbt project with dbt's own Python API: the deploy build and district builds.

dbtRunner runs in the task's process, so dbt's results come back as objects (no log
scraping) and a failing model fails the task with dbt's message.

Every district shares the warehouse's tables, and each district's sync builds only its
own rows (a *district build*: ``CLEVER_BUILD_DISTRICTS`` scopes every model, snapshot
and test, see dbt_project/macros/build_scope.sql). Two PostgreSQL advisory locks keep
that safe:

- the **deploy lock**: a district build holds it shared, so builds of different
  districts run side by side; the *deploy build* (the whole project, unscoped, run when
  the warehouse was built with another version of the dbt project) holds it
  exclusively, alone, while it creates or changes tables, views and functions;
- a **district lock** per district: one build (or approval) of a district at a time,
  never blocking another district.

Each build has its own dbt target directory (dbt writes its manifest and results
there, and concurrent builds must not share one), seeded with the last parse (the
deploy's, or a later build's when dbt had to parse again) so a build re-parses in about
a second.
"""

from __future__ import annotations

import filecmp
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from clever.connections import WarehouseTarget
from clever.paths import ARTIFACTS_DIR, DBT_PROJECT_DIR
from clever.warehouse import ensure_landing_schema

log = logging.getLogger(__name__)

# Held shared by district builds and approvals, exclusively by the deploy build.
DEPLOY_LOCK_KEY = 0x0C1E7E13
# pg_advisory_lock(namespace, hashtext(slug)): one build or approval per district at a time.
DISTRICT_LOCK_NAMESPACE = 0x0C1E7E15
SCOPE_ENV = "CLEVER_BUILD_DISTRICTS"
FULL_REFRESH_ENV = "CLEVER_BUILD_FULL_REFRESH"
# What a district build runs: snapshots, tables and every test, never a view (the deploy
# creates them; replacing a view under concurrent builds would race).
DISTRICT_BUILD_SELECTOR = "district_build"
# An events run's build between complete ones: no data tests, no rollover report.
EVENTS_BUILD_SELECTOR = "district_events_build"
_PARTIAL_PARSE = "partial_parse.msgpack"

_DEPLOYMENTS_DDL = """
CREATE SCHEMA IF NOT EXISTS clever_landing;
CREATE TABLE IF NOT EXISTS clever_landing.dbt_deployments (
    fingerprint  text        NOT NULL,
    dbt_version  text        NOT NULL,
    started_at   timestamptz NOT NULL,
    deployed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    seconds      numeric     NOT NULL
);
"""


class DbtError(RuntimeError):
    """dbt reported a failure; the message lists the failing nodes."""


class BuildLockTimeout(DbtError):
    """A lock the build needs was held for longer than the build may wait."""


@dataclass(frozen=True)
class DbtOutcome:
    started_at_epoch: float
    seconds: float
    statuses: dict[str, str]  # unique_id -> status
    warnings: dict[str, str] = field(default_factory=dict)  # unique_id -> dbt's message


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


def _acquire(conn: psycopg.Connection, query: str, args: tuple, timeout_seconds: int, what: str) -> None:
    started = time.monotonic()
    conn.execute(f"SET lock_timeout = '{int(timeout_seconds)}s'")
    try:
        conn.execute(query, args)
    except psycopg.errors.LockNotAvailable:
        raise BuildLockTimeout(f"{what} was held for over {timeout_seconds}s; re-run this DAG (an extraction "
                               "already approved is applied by the district's next build)") from None
    finally:
        conn.execute("SET lock_timeout = 0")
    waited = time.monotonic() - started
    if waited > 1:
        log.info("waited %.0fs for %s", waited, what)


@contextmanager
def district_lock(conninfo: str, slugs: Iterable[str], timeout_seconds: int = 3600) -> Iterator[None]:
    """Hold the deploy lock shared and each district's own lock, waiting up to
    ``timeout_seconds`` for them. Builds and approvals of other districts go on meanwhile;
    a deploy build waits for this to end (and this for a running deploy)."""
    slugs = sorted(set(slugs))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _acquire(conn, "SELECT pg_advisory_lock_shared(%s)", (DEPLOY_LOCK_KEY,), timeout_seconds,
                 "the deploy build (the dbt project changed)")
        try:
            for slug in slugs:  # sorted: two multi-district holders cannot deadlock
                _acquire(conn, "SELECT pg_advisory_lock(%s, hashtext(%s))", (DISTRICT_LOCK_NAMESPACE, slug),
                         timeout_seconds, f"district {slug!r}'s build lock (another build or approval of it)")
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock_all()")


@contextmanager
def deploy_lock(conninfo: str, timeout_seconds: int = 3600) -> Iterator[None]:
    """Hold the warehouse alone: every district build and approval has ended, and none
    starts until this ends."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _acquire(conn, "SELECT pg_advisory_lock(%s)", (DEPLOY_LOCK_KEY,), timeout_seconds,
                 "the warehouse (running district builds, before deploying the dbt project)")
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock_all()")


def target_path() -> Path:
    """The deploy build's dbt target: its manifest is the project's (dbt docs, tests)."""
    return ARTIFACTS_DIR / "dbt_target"


def district_build_path(slug: str) -> Path:
    """Where a district's last build keeps dbt's results and log."""
    return ARTIFACTS_DIR / "dbt_builds" / slug


# What dbt writes into the project directory (its profiles directory too): not the project.
# .user.yml appears at dbt's first run; counting it made the second build redeploy.
_DBT_OUTPUTS = frozenset({"target", "logs", "dbt_packages", ".user.yml"})


def project_fingerprint() -> str:
    """What the warehouse must have been deployed with: every file of the dbt project
    (but its own outputs) and dbt's version."""
    from dbt.version import __version__ as dbt_version

    digest = hashlib.sha256(dbt_version.encode())
    for path in sorted(DBT_PROJECT_DIR.rglob("*")):
        relative = path.relative_to(DBT_PROJECT_DIR)
        if path.is_file() and relative.parts[0] not in _DBT_OUTPUTS:
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def deployed_fingerprint(conninfo: str) -> str | None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('clever_landing.dbt_deployments')").fetchone()[0] is None:
            return None
        row = conn.execute("SELECT fingerprint FROM clever_landing.dbt_deployments "
                           "ORDER BY deployed_at DESC LIMIT 1").fetchone()
    return row[0] if row else None


def ensure_deployed(target: WarehouseTarget, timeout_seconds: int = 3600) -> DbtOutcome | None:
    """Deploy the dbt project if the warehouse was built with another version of it (or
    never): an unscoped build of everything but the tests (each district's build runs its
    own), alone on the warehouse. None when it was already deployed."""
    from dbt.version import __version__ as dbt_version

    wanted = project_fingerprint()
    if deployed_fingerprint(target.conninfo) == wanted:
        return None
    with deploy_lock(target.conninfo, timeout_seconds):
        if deployed_fingerprint(target.conninfo) == wanted:  # deployed while we waited
            return None
        log.info("deploying the dbt project to the warehouse (fingerprint %s)", wanted[:12])
        with psycopg.connect(target.conninfo, autocommit=True) as conn:
            ensure_landing_schema(conn)  # the landing columns the new models read (make deploy runs no sync first)
        outcome = run_dbt(target, ["build", "--exclude", "resource_type:test"])
        with psycopg.connect(target.conninfo, autocommit=True) as conn:
            conn.execute(_DEPLOYMENTS_DDL)
            conn.execute("INSERT INTO clever_landing.dbt_deployments (fingerprint, dbt_version, started_at, seconds) "
                         "VALUES (%s, %s, to_timestamp(%s), %s)",
                         (wanted, dbt_version, outcome.started_at_epoch, round(outcome.seconds, 1)))
    log.info("dbt project deployed in %.1fs", outcome.seconds)
    return outcome


def build_districts(target: WarehouseTarget, slugs: Iterable[str], full_refresh: bool = False,
                    lock_timeout_seconds: int = 3600, selector: str = DISTRICT_BUILD_SELECTOR) -> DbtOutcome:
    """The district build: snapshots, tables and tests of ``slugs`` only, holding their
    district locks (the deploy, if the project changed, first). ``selector``: what of it
    (EVENTS_BUILD_SELECTOR: an events run's lighter build)."""
    slugs = sorted(set(slugs))
    if not slugs:
        raise ValueError("a district build needs at least one district")
    deployed = ensure_deployed(target, lock_timeout_seconds)
    scope = {SCOPE_ENV: ",".join(slugs), FULL_REFRESH_ENV: "1" if full_refresh else ""}
    with district_lock(target.conninfo, slugs, lock_timeout_seconds):
        try:
            outcome = run_dbt(target, ["build", "--selector", selector], scope=scope,
                              results_dir=district_build_path(slugs[0]) if len(slugs) == 1 else None)
        except DbtError as exc:
            raise DbtError(f"district {', '.join(map(repr, slugs))}: {exc}") from None
    if deployed is not None:  # what the deploy applied of these districts counts as theirs
        return DbtOutcome(deployed.started_at_epoch, deployed.seconds + outcome.seconds,
                          {**deployed.statuses, **outcome.statuses}, outcome.warnings)
    return outcome


def run_dbt(target: WarehouseTarget, args: list[str], scope: dict[str, str] | None = None,
            results_dir: Path | None = None) -> DbtOutcome:
    """Invoke dbt with ``args`` (e.g. ["build"]) against ``target``; raise DbtError on failure.

    Unscoped (``scope`` None) it writes to the project's target directory; a district
    build writes to a directory of its own, seeded with that one's parse, and keeps its
    results and log in ``results_dir``."""
    from dbt.cli.main import dbtRunner

    env = {**target.dbt_env(), SCOPE_ENV: "", FULL_REFRESH_ENV: "", **(scope or {})}
    with _build_target(scope is not None, results_dir) as (target_dir, log_dir):
        command = [
            *args,
            "--project-dir", str(DBT_PROJECT_DIR),
            "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target-path", str(target_dir),
            "--log-path", str(log_dir),
        ]
        started_epoch = time.time()
        started = time.monotonic()
        with _environment(env):
            result = dbtRunner().invoke(command)
    statuses: dict[str, str] = {}
    warnings: dict[str, str] = {}
    failures: list[str] = []
    for node_result in getattr(result.result, "results", None) or []:
        status = str(getattr(node_result.status, "value", node_result.status))
        unique_id = node_result.node.unique_id
        statuses[unique_id] = status
        if status in {"error", "fail", "runtime error"}:
            failures.append(f"{unique_id}: {status}: {node_result.message}")
        elif status == "warn":
            warnings[unique_id] = str(node_result.message)
    if isinstance(result.exception, KeyboardInterrupt):  # dbt cancelled its queries; the caller stops
        raise result.exception
    if not result.success:
        detail = "; ".join(failures) or str(result.exception or "dbt reported failure")
        raise DbtError(f"dbt {' '.join(args)} failed: {detail}")
    return DbtOutcome(started_epoch, time.monotonic() - started, statuses, warnings)


@contextmanager
def _build_target(scoped: bool, results_dir: Path | None) -> Iterator[tuple[Path, Path]]:
    if not scoped:
        target_path().mkdir(parents=True, exist_ok=True)
        yield target_path(), ARTIFACTS_DIR / "dbt_logs"
        return
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dbt_build_", dir=ARTIFACTS_DIR))
    seed, parse = target_path() / _PARTIAL_PARSE, work / _PARTIAL_PARSE
    try:
        if seed.exists():
            shutil.copyfile(seed, parse)
        log_dir = results_dir or work
        log_dir.mkdir(parents=True, exist_ok=True)
        try:
            yield work, log_dir
        finally:
            if results_dir is not None and (work / "run_results.json").exists():
                os.replace(work / "run_results.json", results_dir / "run_results.json")
            if parse.exists() and not (seed.exists() and filecmp.cmp(parse, seed, shallow=False)):
                _keep_as_seed(parse, seed)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _keep_as_seed(parse: Path, seed: Path) -> None:
    """dbt parsed again (no seed, or one of another warehouse or project version): the
    next builds start from this parse instead of parsing in full as well. Replaced
    atomically: builds of other districts may be reading the seed."""
    seed.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=_PARTIAL_PARSE, dir=seed.parent)
    os.close(handle)
    staging = Path(name)
    try:
        shutil.copyfile(parse, staging)
        os.replace(staging, seed)
    finally:
        staging.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m clever.dbt_runner deploy``: deploy the dbt project to the warehouse now
    (after an upgrade, ahead of the next syncs), if it is not deployed yet. Without
    ``--url``, the warehouse is Airflow's ``clever_warehouse`` connection, found as the
    tasks find it (in a worker container); ``make deploy`` finds it as ``make sync`` does."""
    import argparse

    from clever.connections import warehouse_target

    parser = argparse.ArgumentParser(prog="clever-dbt", description=main.__doc__)
    parser.add_argument("command", choices=["deploy"])
    parser.add_argument("--url", help="warehouse URL (default: Airflow's clever_warehouse connection)")
    parser.add_argument("--lock-timeout", type=int, default=3600)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = WarehouseTarget.from_conninfo(args.url) if args.url else warehouse_target()
    outcome = ensure_deployed(target, args.lock_timeout)
    print("already deployed" if outcome is None else f"deployed in {outcome.seconds:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
