"""Run a district's sync DAG through real Airflow from a shell: ``make sync DISTRICT=<slug>``.

Uses ``airflow dags test`` (a full DAG run in one process, no scheduler needed) with
this repository's dags/ and plugins/, initialising Airflow's metadata database on first
use. ``AIRFLOW_CONN_*`` and ``CLEVER_DISTRICTS_FILE`` in the environment are honoured;
when Airflow has no ``clever_warehouse`` connection (environment, secrets backend or
metadata DB) the embedded one (``make db-up``) is used.

    python -m clever.runner sync --district demo [--conf '{"allow_mass_archive": true}']
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path

from clever.pg_local import default_url
from clever.warehouse import EMBEDDED_WAREHOUSE_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
DEMO_TOKEN = "demo-district-token"  # the simulator's sample district; not a real credential
SIM_PORT = int(os.environ.get("SIM_PORT", "8765"))


def airflow_env(base: dict[str, str] | None = None, airflow_home: Path | None = None) -> dict[str, str]:
    """Environment for Airflow commands on this repo, keeping what the caller set."""
    env = dict(os.environ if base is None else base)
    home = Path(env.get("AIRFLOW_HOME") or airflow_home or REPO_ROOT / ".local" / "airflow")
    env.setdefault("AIRFLOW_HOME", str(home))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "dags"))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO_ROOT / "plugins"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
    env.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
    # Not AIRFLOW_CONN_CLEVER_WAREHOUSE: a variable would shadow a clever_warehouse
    # connection stored in the metadata DB. The tasks fall back to this one only when
    # Airflow finds no such connection anywhere (clever.connections.warehouse_target).
    env.setdefault(EMBEDDED_WAREHOUSE_ENV, default_url())
    paths = [str(REPO_ROOT / "plugins"), env.get("PYTHONPATH", "")]
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


def ensure_metadata_db(env: dict[str, str]) -> None:
    """`airflow db migrate` once per AIRFLOW_HOME and Airflow version."""
    from airflow import __version__ as airflow_version

    home = Path(env["AIRFLOW_HOME"])
    stamp = home / f".migrated-{airflow_version}"
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
    when = (logical_date or datetime.now(UTC)).isoformat()
    command = [str(BIN_DIR / "airflow"), "dags", "test", dag_id, when]
    if conf:
        command += ["--conf", json.dumps(conf)]
    return subprocess.run(command, env=env, text=True, check=False,
                          stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.STDOUT if capture else None)


@contextmanager
def demo_simulator(env: dict[str, str], port: int = SIM_PORT) -> Iterator[None]:
    """For the `demo` district with no `clever_demo` connection configured: serve the
    sample district from the simulator for the duration and point the connection at it."""
    if "AIRFLOW_CONN_CLEVER_DEMO" in env:
        yield
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "clever.simulator", "--port", str(port)],
        env={**env, "CLEVER_SIM_TOKEN": DEMO_TOKEN}, stdout=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    if "listening" not in line:
        process.kill()
        raise RuntimeError(f"the Clever API simulator did not start on port {port}: {line.strip()}")
    env["AIRFLOW_CONN_CLEVER_DEMO"] = json.dumps(
        {"conn_type": "http", "host": f"http://127.0.0.1:{port}", "password": DEMO_TOKEN})
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def standalone(port: int) -> int:
    """`airflow standalone` on this repo, with the demo district's simulator running."""
    env = airflow_env()
    env["AIRFLOW__API__PORT"] = str(port)
    env.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
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
    sync = sub.add_parser("sync", help="run one full sync of a district through Airflow")
    sync.add_argument("--district", required=True)
    sync.add_argument("--conf", default=None, help="JSON params, e.g. '{\"allow_mass_archive\": true}'")
    ui = sub.add_parser("airflow", help="airflow standalone (UI on :8080) with every district's DAG")
    ui.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)

    if args.command == "airflow":
        return standalone(args.port)

    from clever.config import get_district

    district = get_district(args.district)
    env = airflow_env()
    with demo_simulator(env) if district.slug == "demo" else nullcontext():
        result = run_dag(district.dag_id, conf=json.loads(args.conf) if args.conf else None, env=env)
    if result.returncode != 0:
        print(f"Sync of district {district.slug!r} FAILED (see the task logs above).", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
