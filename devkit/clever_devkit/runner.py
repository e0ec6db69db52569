"""Run a district's sync DAG through real Airflow from a shell: ``make sync DISTRICT=<slug>``.

Uses ``airflow dags test`` (a full DAG run in one process, no scheduler needed) with
this repository's dags/ and plugins/, initialising Airflow's metadata database on first
use. ``AIRFLOW_CONN_*`` and ``CLEVER_DISTRICTS_FILE`` in the environment are honoured;
when Airflow has no ``clever_warehouse`` connection (environment, secrets backend or
metadata DB) the embedded one (``make db-up``) is used.

The console gets one line per finished task, the run summary and a last line saying
whether the sync succeeded; Airflow's own log goes to a file it names. SIGTERM or Ctrl-C
stops the run: the running step fails at once (clever.dag_factory), and Airflow is
killed if it has not ended within a few seconds.

    python -m clever_devkit.runner sync --district demo [--conf '{"allow_mass_archive": true}']
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from clever.connections import EMBEDDED_WAREHOUSE_ENV, WAREHOUSE_CONN_ID, normalise_postgres_uri
from clever.paths import DAGS_DIR, LOCAL_DIR, PLUGINS_DIR
from clever_devkit.cli import UsageError, port_in_use, run_main
from clever_devkit.pg_local import default_url

BIN_DIR = Path(sys.executable).parent
DEMO_TOKEN = "demo-district-token"  # the simulator's sample district; not a real credential
SIM_PORT = int(os.environ.get("SIM_PORT", "8765"))
STOP_GRACE_SECONDS = 10.0  # after SIGTERM, how long Airflow may take to end before it is killed


def airflow_env(base: dict[str, str] | None = None, airflow_home: Path | None = None) -> dict[str, str]:
    """Environment for Airflow commands on this repo, keeping what the caller set."""
    env = dict(os.environ if base is None else base)
    home = Path(env.get("AIRFLOW_HOME") or airflow_home or LOCAL_DIR / "airflow")
    env.setdefault("AIRFLOW_HOME", str(home))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_DIR))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(PLUGINS_DIR))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
    env.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
    # Not AIRFLOW_CONN_CLEVER_WAREHOUSE: a variable would shadow a clever_warehouse
    # connection stored in the metadata DB. The tasks fall back to this one only when
    # Airflow finds no such connection anywhere (clever.connections.warehouse_target).
    env.setdefault(EMBEDDED_WAREHOUSE_ENV, default_url())
    paths = [str(PLUGINS_DIR), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PATH"] = os.pathsep.join([str(BIN_DIR), env.get("PATH", "")])
    return env


def stored_connection(env: dict[str, str], conn_id: str) -> dict | None:
    """Connection ``conn_id`` as Airflow resolves it for ``env`` (secrets backend, environment,
    metadata DB), as Airflow's JSON connection format; None if Airflow has none (or no
    metadata DB yet). Its password stays in this process."""
    found = subprocess.run([str(BIN_DIR / "airflow"), "connections", "get", conn_id, "-o", "json"],
                           env=env, capture_output=True, text=True, check=False)
    if found.returncode != 0:
        return None
    (conn,) = json.loads(found.stdout)
    return {"conn_type": conn["conn_type"], "host": conn["host"], "port": conn["port"], "login": conn["login"],
            "password": conn["password"], "schema": conn["schema"], "extra": conn["extra_dejson"] or {}}


def warehouse_url(env: dict[str, str] | None = None) -> str:
    """The warehouse's connection string outside Airflow tasks, found as the tasks of
    ``make sync`` find it: ``AIRFLOW_CONN_CLEVER_WAREHOUSE``; else a ``clever_warehouse``
    connection that Airflow holds (the local metadata DB or a secrets backend, asked
    through ``airflow connections get``); else the embedded server of ``make db-up``.
    """
    env = airflow_env(env)
    uri = env.get("AIRFLOW_CONN_CLEVER_WAREHOUSE")
    if uri:
        return normalise_postgres_uri(uri)
    stored = stored_connection(env, WAREHOUSE_CONN_ID)
    if stored is not None:
        return normalise_postgres_uri(json.dumps(stored))
    return env[EMBEDDED_WAREHOUSE_ENV]


def ensure_metadata_db(env: dict[str, str]) -> None:
    """`airflow db migrate` once per AIRFLOW_HOME and Airflow version."""
    home = Path(env["AIRFLOW_HOME"])
    stamp = home / f".migrated-{version('apache-airflow')}"
    if stamp.exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(BIN_DIR / "airflow"), "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    stamp.touch()


def run_dag(dag_id: str, conf: dict | None = None, env: dict[str, str] | None = None,
            logical_date: datetime | None = None, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """One real DAG run via `airflow dags test`; returncode != 0 means the run failed."""
    env = airflow_env(env)
    ensure_metadata_db(env)
    return subprocess.run(_dags_test(dag_id, logical_date or datetime.now(UTC), conf), env=env, text=True, check=False,
                          stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.STDOUT if capture else None)


def _dags_test(dag_id: str, logical_date: datetime, conf: dict | None) -> list[str]:
    command = [str(BIN_DIR / "airflow"), "dags", "test", dag_id, logical_date.isoformat()]
    return command + (["--conf", json.dumps(conf)] if conf else [])


@contextmanager
def demo_simulator(env: dict[str, str], port: int = SIM_PORT) -> Iterator[None]:
    """For the `demo` district with no `clever_demo` connection configured: serve the
    sample district from the simulator for the duration and point the connection at it."""
    if "AIRFLOW_CONN_CLEVER_DEMO" in env:
        yield
        return
    if port_in_use(port):
        raise UsageError(f"port {port} is in use, so the Clever API simulator cannot start there: stop what "
                         f"listens on it, or choose another port (make ... SIM_PORT=<free port>)")
    log_path = run_log_dir(env) / "simulator.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "clever_devkit.simulator", "--port", str(port)],
            env={**env, "CLEVER_SIM_TOKEN": DEMO_TOKEN}, stdout=subprocess.PIPE, stderr=log, text=True,
        )
    line = process.stdout.readline() if process.stdout else ""
    if "listening" not in line:
        process.kill()
        process.wait(timeout=10)
        last = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["it exited without saying why"]
        raise UsageError(f"the Clever API simulator did not start on port {port}: {last[0]} (log: {log_path})")
    env["AIRFLOW_CONN_CLEVER_DEMO"] = json.dumps(
        {"conn_type": "http", "host": f"http://127.0.0.1:{port}", "password": DEMO_TOKEN})
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class WatchedRun:
    dag_id: str
    returncode: int
    log_path: Path
    seconds: float
    run_id: str | None = None
    stopped_by: str | None = None  # the signal that stopped it
    killed: bool = False  # Airflow did not end within STOP_GRACE_SECONDS of the signal

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and self.stopped_by is None


def metadata_db_url(env: dict[str, str]) -> str:
    """Airflow's metadata database: the environment's setting, else airflow.cfg's (written
    by `airflow db migrate`), else as `airflow config` resolves it (a _CMD or _SECRET)."""
    if env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        return env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    config = configparser.ConfigParser(interpolation=None)
    config.read(Path(env["AIRFLOW_HOME"]) / "airflow.cfg")
    if config.get("database", "sql_alchemy_conn", fallback=""):
        return config.get("database", "sql_alchemy_conn")
    return subprocess.run([str(BIN_DIR / "airflow"), "config", "get-value", "database", "sql_alchemy_conn"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()


class _TaskReporter:
    """Prints a line for each task of the run that reaches a final state (or a retry),
    read from Airflow's metadata database: the console shows progress while Airflow's own
    log goes to a file."""

    REPORTED = ("success", "failed", "upstream_failed", "skipped", "up_for_retry")

    def __init__(self, env: dict[str, str], dag_id: str):
        from sqlalchemy import create_engine

        self.dag_id = dag_id
        self.engine = create_engine(metadata_db_url(env))
        self.after_id = self._scalar("SELECT max(id) FROM dag_run WHERE dag_id = :dag", dag=dag_id) or 0
        self.run_id: str | None = None
        self.seen: set[tuple] = set()

    def _scalar(self, query: str, **params: Any) -> Any:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return conn.execute(text(query), params).scalar()

    def report(self) -> None:
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError

        try:
            if self.run_id is None:
                self.run_id = self._scalar("SELECT run_id FROM dag_run WHERE dag_id = :dag AND id > :after "
                                           "ORDER BY id DESC LIMIT 1", dag=self.dag_id, after=self.after_id)
                if self.run_id is None:
                    return
            with self.engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT task_id, map_index, state, try_number, duration FROM task_instance "
                    "WHERE dag_id = :dag AND run_id = :run ORDER BY end_date"),
                    {"dag": self.dag_id, "run": self.run_id}).all()
        except OperationalError:  # SQLite busy with Airflow's write: next time
            return
        for task_id, map_index, state, try_number, duration in rows:
            key = (task_id, map_index, state, try_number)
            if state not in self.REPORTED or key in self.seen:
                continue
            self.seen.add(key)
            name = task_id if map_index in (None, -1) else f"{task_id}[{map_index}]"
            took = f" in {duration:.1f} s" if duration is not None else ""
            verdict = {"up_for_retry": f"failed (try {try_number}), will be retried",
                       "upstream_failed": "not run (an earlier task failed)"}.get(state, state)
            print(f"  {name:<12} {verdict}{took}", flush=True)


def run_log_dir(env: dict[str, str]) -> Path:
    """Where Airflow's log of each `make sync`/`make demo` run goes."""
    return Path(env.get("CLEVER_ARTIFACTS_DIR") or LOCAL_DIR / "artifacts") / "airflow_runs"


def watch_dag(dag_id: str, conf: dict | None = None, env: dict[str, str] | None = None,
              log_name: str | None = None) -> WatchedRun:
    """One real DAG run via `airflow dags test`, its log in a file, a line per finished task
    on the console. SIGTERM/SIGINT stop it (see the module's docstring)."""
    env = airflow_env(env)
    ensure_metadata_db(env)
    started_at = datetime.now(UTC)
    log_path = run_log_dir(env) / f"{log_name or dag_id}-{started_at:%Y%m%dT%H%M%S}.log"
    command = _dags_test(dag_id, started_at, conf)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    reporter = _TaskReporter(env, dag_id)
    print(f"{dag_id}: running through `airflow dags test`; Airflow's log: {log_path}", flush=True)
    stopped: list[str] = []

    def stop(signum: int, frame: Any) -> None:
        if not stopped:
            stopped.append(signal.Signals(signum).name)
            print(f"{signal.Signals(signum).name}: stopping the run (the running step fails now) ...", flush=True)
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)

    started = time.monotonic()
    with log_path.open("w") as log:
        # A session of its own: Ctrl-C reaches this process only, which stops Airflow in order.
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    killed = False
    try:
        deadline = None
        while process.poll() is None:
            reporter.report()
            if stopped and deadline is None:
                deadline = time.monotonic() + STOP_GRACE_SECONDS
            if deadline is not None and time.monotonic() > deadline:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                killed = True
                process.wait()
                break
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
        reporter.report()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if process.poll() is None:  # this process failed: never leave Airflow running behind it
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return WatchedRun(dag_id, process.returncode, log_path, time.monotonic() - started, reporter.run_id,
                      stopped[0] if stopped else None, killed)


def sync_summary(env: dict[str, str], district_slug: str, run_id: str | None) -> str | None:
    """The run summary the sync's summarize task wrote, as its log shows it."""
    import psycopg

    from clever.summary import format_summary

    if run_id is None:
        return None
    try:
        with psycopg.connect(warehouse_url(env), autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SELECT s.summary FROM clever_landing.run_summaries s "
                               "JOIN clever_landing.sync_runs r USING (sync_run_id) "
                               "WHERE r.district_slug = %s AND r.external_run_id = %s "
                               "ORDER BY s.sync_run_id DESC LIMIT 1", (district_slug, run_id)).fetchone()
    except psycopg.Error as exc:
        return f"(the run summary could not be read: {type(exc).__name__})"
    return format_summary(row[0]) if row else None


def sync(slug: str, conf: dict | None = None) -> int:
    """``make sync``: one district's sync, reported as described in the module's docstring."""
    from clever.config import get_district

    district = get_district(slug)
    env = airflow_env()
    with demo_simulator(env) if district.slug == "demo" else nullcontext():
        run = watch_dag(district.dag_id, conf=conf, env=env, log_name=f"sync-{district.slug}")
    summary = sync_summary(env, district.slug, run.run_id)
    if summary:
        print(summary)
    if run.succeeded:
        print(f"Sync of district {district.slug!r} succeeded in {run.seconds:.0f} s.")
        return 0
    if run.stopped_by:
        how = "Airflow was killed after it did not end in time" if run.killed else "the running step failed"
        print(f"Sync of district {district.slug!r} STOPPED by {run.stopped_by} after {run.seconds:.0f} s ({how}); "
              f"nothing from it is archived. Airflow's log: {run.log_path}", file=sys.stderr)
        return 128 + signal.Signals[run.stopped_by].value
    print(f"Sync of district {district.slug!r} FAILED after {run.seconds:.0f} s; the failed task and its error "
          f"are in Airflow's log: {run.log_path}", file=sys.stderr)
    return 1


def standalone(port: int) -> int:
    """`airflow standalone` on this repo, with the demo district's simulator running."""
    if port_in_use(port):
        raise UsageError(f"port {port} is in use, so the Airflow UI cannot start there: stop what listens on it, "
                         "or choose another port (make airflow AIRFLOW_PORT=<free port>)")
    env = airflow_env()
    env["AIRFLOW__API__PORT"] = str(port)
    env.setdefault("AIRFLOW__API__HOST", "127.0.0.1")
    # Tasks report to the execution API of *this* api-server; the default (:8080) could be
    # another Airflow on the same machine.
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{port}/execution/"
    env.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    # One machine runs every component: under load the api-server can answer a task's
    # first call after Airflow's 5 s default, which fails the task before it starts.
    env.setdefault("AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT", "60")
    env.setdefault("AIRFLOW__WORKERS__EXECUTION_API_RETRIES", "10")
    ensure_metadata_db(env)
    passwords = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    print(f"Airflow UI: http://localhost:{port}  user: admin  password: in {passwords} "
          "(written on first start). Ctrl-C stops it.", flush=True)
    with demo_simulator(env):
        try:
            return subprocess.run([str(BIN_DIR / "airflow"), "standalone"], env=env, check=False).returncode
        except KeyboardInterrupt:
            return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clever-runner", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sync_command = sub.add_parser("sync", help="run one full sync of a district through Airflow")
    sync_command.add_argument("--district", required=True)
    sync_command.add_argument("--conf", default=None, help="JSON params, e.g. '{\"allow_mass_archive\": true}'")
    ui = sub.add_parser("airflow", help="airflow standalone (UI on :8080) with every district's DAG")
    ui.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)

    if args.command == "airflow":
        return standalone(args.port)

    try:
        conf = json.loads(args.conf) if args.conf else None
    except ValueError as exc:
        raise UsageError(f"--conf is not valid JSON ({exc}): e.g. CONF='{{\"allow_mass_archive\": true}}'") from None
    return sync(args.district, conf)


if __name__ == "__main__":
    sys.exit(run_main(main))
