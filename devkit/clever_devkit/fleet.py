"""``make bench-fleet``: a day of a fleet of districts under a real Airflow scheduler.

Everything is real: N generated districts of a realistic size mix are served by one
simulator process (each with its own token, from id-sorted stores on disk); a throwaway
PostgreSQL server holds both the warehouse and Airflow's metadata database; Airflow runs
as it does in production, as separate processes: the api-server (the tasks' execution
API), the scheduler with the LocalExecutor (or the CeleryExecutor with Redis and two
Celery workers) and the DAG processor. Every district's DAG is triggered at once, as a
daily schedule would, and the bench waits for every run.

Days: ``first`` (every district's first sync), ``unchanged`` (nothing changed) and
``change`` (1% of users edited and 1% of student enrolments moved, in every district).
For each day it records the fleet's wall time, every district's build seconds, the
first and last districts' builds, each task's time in the queue and its duration, the
gap between one task's end and the next one's start in a run (scheduling, the wait for a
slot and the process start, under load), peak RSS per process kind, and failures. A chain
of no-op tasks on the idle scheduler gives Airflow's own cost per task. Then a few districts are built again on a
quiet warehouse and on a warehouse of their own (the cost of their own data alone),
and the results are extrapolated to 1,000 districts.

    python -m clever_devkit.fleet --districts 50 [--size-mix 0.7:300-3000,...] [--executor local|celery]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clever.paths import LOCAL_DIR, REPO_ROOT
from clever_devkit import DEV_PYTHONPATH
from clever_devkit.bench import PG_SETTINGS, ProcessSampler, _git_revision, _point, machine

DEFAULT_WORK_DIR = LOCAL_DIR / "bench-fleet"
PERFORMANCE_DOC = REPO_ROOT / "docs" / "PERFORMANCE.md"
# The Airflow pools of the district DAGs: docker-compose.yaml imports the same file.
POOLS_FILE = REPO_ROOT / "config" / "airflow_pools.json"
API_VERSION = "v3.0"
DATA_FORMAT = 1  # bump when the generator's output changes
CHANGE_RATE = 0.01
# share:min-max students. Most districts small, some medium, a few large (100,000+ is
# possible with --size-mix; the default keeps a 50-district day within this machine).
DEFAULT_SIZE_MIX = "0.70:300-3000,0.24:3000-20000,0.06:40000-100000"
DAYS = ("first", "unchanged", "change")
PROBE_DAG = "fleet_probe"
PROBE_TASKS = 4
TARGETS = {"resync_build_over_alone": 1.2, "unchanged_day_minutes": 20, "change_day_minutes": 30,
           "extrapolated_hours_1000_districts_8_workers": 2.0}

PROBE_DAG_FILE = f'''"""A chain of no-op tasks run beside the fleet: its run's wall time over its tasks is
what Airflow itself takes per task under that load (scheduling, queueing, starting)."""
from datetime import datetime

from airflow.sdk import DAG, chain, task

with DAG(dag_id="{PROBE_DAG}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["bench"]):
    @task
    def noop() -> None:
        return None

    chain(*[noop.override(task_id=f"noop_{{i}}")() for i in range({PROBE_TASKS})])
'''


# -- the fleet --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FleetDistrict:
    slug: str
    students: int


def parse_size_mix(text: str) -> list[tuple[float, int, int]]:
    """``share:min-max,...`` -> [(share, min, max)]; shares are normalised."""
    mix = []
    for part in text.split(","):
        share, _, bounds = part.strip().partition(":")
        low, _, high = bounds.partition("-")
        mix.append((float(share), int(low), int(high or low)))
    if not mix or any(s <= 0 or lo < 112 or hi < lo for s, lo, hi in mix):
        raise ValueError(f"size mix {text!r}: each part is share:min-max with min >= 112 students")
    total = sum(s for s, _, _ in mix)
    return [(s / total, lo, hi) for s, lo, hi in mix]


def plan_fleet(count: int, size_mix: str, seed: int = 0) -> list[FleetDistrict]:
    """``count`` districts, as many of each size band as its share (largest remainders),
    sizes drawn log-uniformly within the band; deterministic for a seed."""
    mix = parse_size_mix(size_mix)
    quotas = [share * count for share, _, _ in mix]
    bands = [math.floor(q) for q in quotas]
    for index in sorted(range(len(mix)), key=lambda i: quotas[i] - bands[i], reverse=True)[:count - sum(bands)]:
        bands[index] += 1
    rng = random.Random(seed)
    sizes = [round(math.exp(rng.uniform(math.log(low), math.log(high))))
             for (_, low, high), n in zip(mix, bands, strict=True) for _ in range(n)]
    rng.shuffle(sizes)
    return [FleetDistrict(f"fleet_{i:04d}", size) for i, size in enumerate(sizes, start=1)]


def prepare_fleet(plan: list[FleetDistrict], data_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Day 1 and day 2 (1% changed) of every district, cached by manifest."""
    from clever_devkit.district_store import derive_changes
    from clever_devkit.sample_district import generate

    manifest_file = data_dir / "manifest.json"
    wanted = {"format": DATA_FORMAT, "seed": seed, "districts": [asdict(d) for d in plan]}
    if manifest_file.exists():
        manifest = json.loads(manifest_file.read_text())
        if {k: manifest.get(k) for k in wanted} == wanted:
            return manifest
    shutil.rmtree(data_dir, ignore_errors=True)
    started = time.monotonic()
    districts = {}
    for index, district in enumerate(plan):
        base = data_dir / district.slug
        counts = generate(base / "day1", students=district.students, seed=seed + index,
                          district_name=f"Fleet District {index + 1}", layout="sorted",
                          versions=[API_VERSION])[API_VERSION]
        changes = derive_changes(base / "day1", base / "day2", CHANGE_RATE, seed + index)
        districts[district.slug] = {"students": district.students, "counts": counts, "changes": asdict(changes)}
    manifest = {**wanted, "by_district": districts, "generate_seconds": round(time.monotonic() - started, 1)}
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest_file.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


# -- services ------------------------------------------------------------------------------------------
@contextmanager
def postgres_server(work: Path):
    """A throwaway PostgreSQL server for the warehouse and Airflow's metadata database."""
    from clever_devkit.pg_local import LocalPostgres, free_port

    base = work / "pg"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    os.chmod(base, 0o755)
    server = LocalPostgres(data_dir=base / "pgdata", port=free_port(), fast_unsafe=True,
                           settings={**PG_SETTINGS, "max_connections": "300"})
    server.destroy()
    server.start()
    try:
        for name in ("warehouse", "airflow"):
            server.create_database(name)
        yield server
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def fleet_simulator(serving: Path, plan: list[FleetDistrict], tokens: dict[str, str], log_path: Path):
    """One simulator process serving every district (its own token each) from disk."""
    env = {**os.environ, "PYTHONPATH": DEV_PYTHONPATH,
           **{f"CLEVER_FLEET_TOKEN_{d.slug.upper()}": tokens[d.slug] for d in plan}}
    command = [sys.executable, "-m", "clever_devkit.simulator", "--port", "0"]
    for d in plan:
        command += ["--district", f"{d.slug}=env:CLEVER_FLEET_TOKEN_{d.slug.upper()}@{serving / d.slug}"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        line = process.stdout.readline() if process.stdout else ""
        if "listening on" not in line:
            process.kill()
            raise RuntimeError(f"the simulator did not start: {line.strip()} (see {log_path})")
        try:
            yield line.split("listening on ", 1)[1].split()[0], process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def ensure_redis_server() -> Path:
    """Debian's redis-server, installed with apt-get when missing and we are root."""
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists()
                                             else None)
    if found:
        return Path(found)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env)
        return Path("/usr/bin/redis-server")
    raise RuntimeError("the CeleryExecutor run needs Debian's redis-server (apt-get install redis-server)")


@contextmanager
def redis_server(work: Path):
    """redis-server as a child process on a free localhost port (no persistence)."""
    from clever_devkit.pg_local import free_port

    port = free_port()
    directory = work / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([str(ensure_redis_server()), "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", str(directory)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not _port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.2)
        yield f"redis://127.0.0.1:{port}/0", process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# -- Airflow ----------------------------------------------------------------------------------------------
def pool_settings(extract_slots: int, build_slots: int) -> dict[str, Any]:
    """The pools of config/airflow_pools.json with the slots sized for this machine."""
    pools = json.loads(POOLS_FILE.read_text())
    return {"clever_extract": {**pools["clever_extract"], "slots": extract_slots},
            "clever_build": {**pools["clever_build"], "slots": build_slots}}


def fleet_settings(executor: str, parallelism: int, build_slots: int, extract_slots: int,
                   celery_workers: int, worker_concurrency: int) -> dict[str, Any]:
    """The Airflow settings of the fleet run; docker-compose.yaml uses the same."""
    return {"executor": executor, "parallelism": parallelism, "build_pool_slots": build_slots,
            "extract_pool_slots": extract_slots, "celery_workers": celery_workers if executor == "celery" else 0,
            "worker_concurrency": worker_concurrency if executor == "celery" else None}


class AirflowFleet:
    """Airflow's components as separate processes, stopped as a group at the end."""

    def __init__(self, work: Path, env: dict[str, str], settings: dict[str, Any]):
        self.work, self.env, self.settings = work, env, settings
        self.processes: list[subprocess.Popen] = []
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=self.env, text=True,
                              capture_output=True, check=check)

    def start(self) -> None:
        self.airflow("db", "migrate")
        pools = self.work / "airflow_pools.json"
        pools.write_text(json.dumps(pool_settings(self.settings["extract_pool_slots"],
                                                  self.settings["build_pool_slots"]), indent=1))
        self.airflow("pools", "import", str(pools))
        components = [["api-server", "--port", self.env["CLEVER_FLEET_API_PORT"]], ["scheduler"], ["dag-processor"]]
        if self.settings["executor"] == "celery":
            # Two workers on one machine: their own names and pid files; one serves the logs.
            components += [["celery", "worker", "--concurrency", str(self.settings["worker_concurrency"]),
                            "--celery-hostname", f"fleet-worker-{i}@%h", "--pid", str(self.work / f"worker-{i}.pid"),
                            *(["--skip-serve-logs"] if i else [])]
                           for i in range(self.settings["celery_workers"])]
        for component in components:
            name = "-".join(component[:2] if component[0] == "celery" else component[:1])
            log = open(self.logs / f"{name}-{len(self.processes)}.log", "w")
            self.processes.append(subprocess.Popen([str(Path(sys.executable).parent / "airflow"), *component],
                                                   env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            try:
                os.killpg(process.pid, signal.SIGKILL)  # task processes left in the group
            except ProcessLookupError:
                pass

    def check_alive(self) -> None:
        dead = [p.args[1:3] for p in self.processes if p.poll() is not None]
        if dead:
            raise RuntimeError(f"Airflow components exited: {dead}; see {self.logs}")


def airflow_env(work: Path, pg_url_for: Any, executor: str, settings: dict[str, Any], broker: str | None,
                api_port: int) -> dict[str, str]:
    from clever_devkit.runner import airflow_env as base_env

    dags = work / "dags"
    shutil.rmtree(dags, ignore_errors=True)
    dags.mkdir(parents=True)
    for dag_file in (REPO_ROOT / "dags").glob("*.py"):
        (dags / dag_file.name).symlink_to(dag_file)
    (dags / f"{PROBE_DAG}.py").write_text(PROBE_DAG_FILE)
    metadata = pg_url_for("airflow").replace("postgresql://", "postgresql+psycopg2://", 1)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(work / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if executor == "celery" else "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(settings["parallelism"]),
        "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__CORE__FERNET_KEY": "",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
        "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "CLEVER_FLEET_API_PORT": str(api_port),
    }
    if executor == "celery":
        env["AIRFLOW__CELERY__BROKER_URL"] = broker or ""
        env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + pg_url_for("airflow")
        env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(settings["worker_concurrency"])
    env.pop("AIRFLOW_CONN_CLEVER_DEMO", None)
    return base_env(env)


TRIGGER_SCRIPT = """
import json, sys
from airflow.api.common.trigger_dag import trigger_dag
from airflow.utils.types import DagRunTriggeredByType
for dag_id, run_id in json.loads(sys.argv[1]):
    trigger_dag(dag_id, run_id=run_id, triggered_by=DagRunTriggeredByType.CLI, conf={})
"""


def wait_for_dags(meta_url: str, dag_ids: list[str], fleet: AirflowFleet, timeout: float = 900) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        fleet.check_alive()
        with psycopg.connect(meta_url, autocommit=True) as conn:
            try:
                parsed = {row[0] for row in conn.execute(
                    "SELECT dag_id FROM dag WHERE dag_id = ANY(%s) AND NOT is_paused", (dag_ids,))}
            except psycopg.errors.UndefinedTable:
                parsed = set()
        if parsed >= set(dag_ids):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(parsed)} of {len(dag_ids)} DAGs were parsed after {timeout:.0f}s")
        time.sleep(3)


def wait_for_runs(meta_url: str, run_ids: dict[str, str], fleet: AirflowFleet, timeout: float) -> dict[str, str]:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        fleet.check_alive()
        with psycopg.connect(meta_url, autocommit=True) as conn:
            states = dict(conn.execute("SELECT dag_id, state FROM dag_run WHERE run_id = ANY(%s)",
                                       (list(set(run_ids.values())),)).fetchall())
        if all(states.get(dag) in ("success", "failed") for dag in run_ids):
            return states
        if time.monotonic() > deadline:
            raise RuntimeError(f"runs not finished after {timeout:.0f}s: "
                               f"{sorted(d for d in run_ids if states.get(d) not in ('success', 'failed'))[:10]}")
        time.sleep(5)


# -- one day of the fleet -----------------------------------------------------------------------------
def process_roles(fleet: AirflowFleet, sim_pid: int, postmaster_pid: int | None, redis_pid: int | None):
    import psutil

    def by_command(*words: str):
        def find():
            found = []
            for process in fleet.processes:
                try:
                    root = psutil.Process(process.pid)
                    for p in [root, *root.children(recursive=True)]:
                        command = " ".join(p.cmdline())
                        if any(w in command for w in words):
                            found.append(p)
                except psutil.Error:
                    continue
            return found
        return find

    def tasks():
        found = []
        for process in fleet.processes:
            try:
                for p in psutil.Process(process.pid).children(recursive=True):
                    command = " ".join(p.cmdline())
                    if "airflow worker" in command or "task supervisor" in command or "execute" in command \
                            or "ForkPoolWorker" in p.name() or p.name().startswith("airflow task"):
                        found.append(p)
            except psutil.Error:
                continue
        return found

    roles = {"api-server": by_command("api-server", "api_server"), "scheduler": by_command("airflow scheduler"),
             "dag-processor": by_command("dag-processor", "dag_processor"), "task": tasks,
             "simulator": lambda: [psutil.Process(sim_pid)]}
    if fleet.settings["executor"] == "celery":
        roles["celery-worker"] = by_command("celery worker", "celeryd")
        if redis_pid:
            roles["redis"] = lambda: [psutil.Process(redis_pid)]
    if postmaster_pid:
        roles["postgres"] = lambda: psutil.Process(postmaster_pid).children()
    return roles


def run_day(day: str, plan: list[FleetDistrict], fleet: AirflowFleet, meta_url: str, warehouse_url: str,
            roles: dict[str, Any], timeout: float) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_ids = {f"clever_sync_{d.slug}": f"fleet_{day}_{stamp}" for d in plan}
    with ProcessSampler(roles, interval=0.5) as sampler:
        started = time.monotonic()
        trigger = subprocess.run([sys.executable, "-c", TRIGGER_SCRIPT, json.dumps(list(run_ids.items()))],
                                 env=fleet.env, capture_output=True, text=True, check=False)
        if trigger.returncode != 0:
            raise RuntimeError(f"triggering the fleet failed:\n{trigger.stderr[-4000:]}")
        states = wait_for_runs(meta_url, run_ids, fleet, timeout)
        wall = time.monotonic() - started
    day_result = {"day": day, "wall_seconds": round(wall, 1), "processes": sampler.by_role(),
                  "machine_cpu_seconds": round(sampler.machine_cpu_seconds, 1),
                  "failed_runs": sorted(d for d, s in states.items() if s != "success")}
    run_id = f"fleet_{day}_{stamp}"
    day_result.update(task_metrics(meta_url, run_id))
    day_result["districts"] = district_metrics(meta_url, warehouse_url, run_id, plan)
    builds = [d for d in day_result["districts"].values() if d.get("build_seconds") is not None]
    if builds:
        first = min(builds, key=lambda d: d["build_started_at"])
        last = max(builds, key=lambda d: d["build_started_at"])
        day_result["first_build"] = {k: first[k] for k in ("slug", "students", "build_seconds")}
        day_result["last_build"] = {k: last[k] for k in ("slug", "students", "build_seconds")}
    return day_result


def task_metrics(meta_url: str, run_id: str) -> dict[str, Any]:
    """Per task kind: how many ran, failed or were retried, their median wait in the queue
    and duration; and the median gap between a task's end and the next task's start in a
    district's run (the scheduler's decision, the wait for a slot and the process start,
    under the fleet's load)."""
    import psycopg

    with psycopg.connect(meta_url, autocommit=True) as conn:
        rows = conn.execute(
            """SELECT dag_id, task_id, state, extract(epoch FROM start_date - queued_dttm), duration, try_number,
                      extract(epoch FROM start_date), extract(epoch FROM end_date)
               FROM task_instance WHERE run_id = %s ORDER BY dag_id, start_date""", (run_id,)).fetchall()
    kinds: dict[str, dict[str, Any]] = {}
    gaps: list[float] = []
    previous: dict[str, float] = {}
    for dag_id, kind, state, queued, duration, tries, started, ended in rows:
        k = kinds.setdefault(kind, {"count": 0, "failed": 0, "retried": 0, "queued": [], "duration": []})
        k["count"] += 1
        k["failed"] += state not in ("success", "skipped")
        k["retried"] += (tries or 1) > 1
        if queued is not None:
            k["queued"].append(float(queued))
        if duration is not None:
            k["duration"].append(float(duration))
        if started is not None and dag_id in previous:
            gaps.append(float(started) - previous[dag_id])
        if ended is not None:
            previous[dag_id] = float(ended)
    summary = {kind: {"count": k["count"], "failed": k["failed"], "retried": k["retried"],
                      "median_queued_seconds": _median(k["queued"]),
                      "median_duration_seconds": _median(k["duration"]),
                      "total_duration_seconds": round(sum(k["duration"]), 1)}
               for kind, k in sorted(kinds.items())}
    return {"tasks": summary, "median_task_gap_seconds": _median(gaps),
            "task_instances": sum(k["count"] for k in summary.values())}


def run_probe(fleet: AirflowFleet, meta_url: str, timeout: float = 600) -> float:
    """Airflow's own cost per task on an idle scheduler: the wall time of a chain of
    no-op tasks over their number."""
    import psycopg

    run_id = f"probe_{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    subprocess.run([sys.executable, "-c", TRIGGER_SCRIPT, json.dumps([[PROBE_DAG, run_id]])], env=fleet.env,
                   capture_output=True, text=True, check=True)
    wait_for_runs(meta_url, {PROBE_DAG: run_id}, fleet, timeout)
    with psycopg.connect(meta_url, autocommit=True) as conn:
        wall = conn.execute("SELECT extract(epoch FROM end_date - start_date) FROM dag_run "
                            "WHERE dag_id = %s AND run_id = %s", (PROBE_DAG, run_id)).fetchone()[0]
    return round(float(wall) / PROBE_TASKS, 2)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def district_metrics(meta_url: str, warehouse_url: str, run_id: str, plan: list[FleetDistrict]) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(meta_url, autocommit=True) as conn:
        tis = conn.execute(
            """SELECT dag_id, task_id, duration, extract(epoch FROM start_date), extract(epoch FROM end_date)
               FROM task_instance WHERE run_id = %s AND dag_id LIKE 'clever_sync_%%'""", (run_id,)).fetchall()
        runs = dict(conn.execute(
            """SELECT dag_id, extract(epoch FROM end_date - start_date) FROM dag_run WHERE run_id = %s""",
            (run_id,)).fetchall())
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        summaries = dict(conn.execute(
            """SELECT r.district_slug, s.summary FROM clever_landing.run_summaries s
               JOIN clever_landing.sync_runs r USING (sync_run_id) WHERE r.external_run_id = %s""",
            (run_id,)).fetchall())
    result: dict[str, Any] = {}
    for district in plan:
        dag_id = f"clever_sync_{district.slug}"
        mine = [t for t in tis if t[0] == dag_id]
        build = next((t for t in mine if t[1] == "build"), None)
        summary = summaries.get(district.slug) or {}
        history = summary.get("history") or {}
        result[district.slug] = {
            "slug": district.slug, "students": district.students,
            "run_seconds": round(float(runs[dag_id]), 1) if runs.get(dag_id) is not None else None,
            "task_seconds": round(sum(float(t[2] or 0) for t in mine), 1),
            "build_seconds": round(float(build[2]), 1) if build and build[2] is not None else None,
            "build_started_at": float(build[3]) if build and build[3] is not None else None,
            "history_rows": sum(h.get("history_rows", 0) for h in history.values()),
        }
    return result


# -- a district's build alone ------------------------------------------------------------------------------
ALONE_SCRIPT = """
import json, sys, time
from pathlib import Path
from clever import steps
from clever.config import load_districts
from clever.connections import CleverEndpoint, WarehouseTarget
url, config, slug, api, token, sync = sys.argv[1:7]
district = next(d for d in load_districts(Path(config)) if d.slug == slug)
ctx = steps.SyncContext(target=WarehouseTarget.from_conninfo(url), district=district, api=CleverEndpoint(api, token))
if sync == "1":
    ctx = ctx.for_run(steps.run_step(ctx, "start_run"))
    for step in ("extract", "approve"):
        steps.run_step(ctx, step)
started = time.monotonic()
steps.run_step(ctx, "build")
print(json.dumps({"build_seconds": time.monotonic() - started}))
"""


def build_alone(env: dict[str, str], url: str, config: Path, slug: str, api: str, token: str,
                sync: bool = True) -> float:
    """One unchanged re-sync of ``slug`` (extract, approve, build) in a plain process;
    returns its build's seconds."""
    result = subprocess.run([sys.executable, "-c", ALONE_SCRIPT, url, str(config), slug, api, token,
                             "1" if sync else "0"], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"build of {slug} failed:\n{result.stderr[-4000:]}")
    return round(json.loads(result.stdout.strip().splitlines()[-1])["build_seconds"], 2)


def wait_until_quiet(url: str, timeout: float = 900) -> float:
    """Checkpoint and wait until no autovacuum worker runs: right after a fleet day (or a
    database dropped) the server flushes and vacuums for minutes, and a build measured
    then pays for it. Returns the seconds waited."""
    import psycopg

    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        while time.monotonic() - started < timeout:
            busy = conn.execute("SELECT count(*) FROM pg_stat_activity "
                                "WHERE backend_type = 'autovacuum worker'").fetchone()[0]
            if not busy:
                break
            time.sleep(2)
    return round(time.monotonic() - started, 1)


def build_phases(results_file: Path) -> dict[str, Any]:
    """Where one district build's dbt time went (its run_results.json): before the first
    node (dbt's start, parse, connections, hooks), the nodes' wall time, after the last
    node, and each node's seconds."""
    results = json.loads(results_file.read_text(encoding="utf-8"))

    def moment(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    timings = [t for node in results["results"] for t in node["timing"] if t.get("started_at")]
    started = moment(results["metadata"]["invocation_started_at"])
    ended = moment(results["metadata"]["generated_at"])
    first = min((moment(t["started_at"]) for t in timings), default=started)
    last = max((moment(t["completed_at"]) for t in timings), default=ended)
    return {"dbt_seconds": round(ended - started, 2), "before_first_node": round(first - started, 2),
            "nodes_wall": round(last - first, 2), "after_last_node": round(ended - last, 2),
            "nodes": {node["unique_id"].split(".", 2)[-1]: round(node["execution_time"], 3)
                      for node in results["results"]}}


def phase_difference(fleet: dict[str, Any], alone: dict[str, Any], top: int = 6) -> dict[str, Any]:
    """Seconds the quiet fleet warehouse's build took over the own warehouse's, per phase,
    and the nodes that differ most."""
    nodes = sorted(((fleet["nodes"].get(n, 0.0) - alone["nodes"].get(n, 0.0), n)
                    for n in set(fleet["nodes"]) | set(alone["nodes"])), reverse=True)
    return {**{key: round(fleet[key] - alone[key], 2)
               for key in ("dbt_seconds", "before_first_node", "nodes_wall", "after_last_node")},
            "node_seconds_total": round(sum(d for d, _ in nodes), 2),
            "nodes": {name: round(d, 2) for d, name in nodes[:top]}}


def measured_builds(env: dict[str, str], url: str, config: Path, slug: str, api: str, token: str,
                    repeats: int) -> tuple[list[float], dict[str, Any] | None]:
    """``repeats`` unchanged re-syncs on a quiet server: their build seconds, and the phases
    of the median one."""
    seconds, phases = [], []
    results_file = Path(env["CLEVER_ARTIFACTS_DIR"]) / "dbt_builds" / slug / "run_results.json"
    for _ in range(repeats):
        wait_until_quiet(url)
        seconds.append(build_alone(env, url, config, slug, api, token))
        phases.append(build_phases(results_file) if results_file.exists() else None)
    median = sorted(range(repeats), key=lambda i: seconds[i])[repeats // 2]
    return seconds, phases[median]


def alone_comparison(sample: list[dict[str, Any]], server: Any, env: dict[str, str], config: Path, api: str,
                     tokens: dict[str, str], serving: Path, data: Path, days: list[str],
                     repeats: int = 3) -> list[dict[str, Any]]:
    """For each sampled district: unchanged re-syncs' builds on the quiet fleet warehouse,
    and on a warehouse holding only that district after the same days (so its own
    history is the same size), ``repeats`` of each on a quiet server, medians compared:
    what the rest of the fleet costs it, and in which phase and nodes. A comparison that
    fails is reported with its error, and the others go on."""
    rows = []
    for district in sample:
        try:
            rows.append(_alone_row(district, server, env, config, api, tokens, serving, data, days, repeats))
        except RuntimeError as exc:
            print(f"  {district['slug']}: alone comparison failed: {exc}", flush=True)
            rows.append({"slug": district["slug"], "students": district["students"], "ratio": None,
                         "error": str(exc)[-2000:]})
    return rows


def _alone_row(district: dict[str, Any], server: Any, env: dict[str, str], config: Path, api: str,
               tokens: dict[str, str], serving: Path, data: Path, days: list[str], repeats: int) -> dict[str, Any]:
    import psycopg

    day_data = {"first": "day1", "change": "day2"}  # an unchanged day writes no history
    last = "day2" if "change" in days else "day1"
    slug = district["slug"]
    in_fleet, fleet_phases = measured_builds(env, server.url_for("warehouse"), config, slug, api, tokens[slug],
                                             repeats)
    name = f"alone_{slug}"
    with psycopg.connect(server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        alone_env = {**env, "CLEVER_ARTIFACTS_DIR": str(Path(env["CLEVER_ARTIFACTS_DIR"]) / name)}
        for day in days:
            if day in day_data:
                _point(serving / slug, data / slug / day_data[day])
                build_alone(alone_env, server.url_for(name), config, slug, api, tokens[slug])
        _point(serving / slug, data / slug / last)
        alone, alone_phases = measured_builds(alone_env, server.url_for(name), config, slug, api, tokens[slug],
                                              repeats)
    finally:
        with psycopg.connect(server.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    fleet_median, alone_median = statistics.median(in_fleet), statistics.median(alone)
    return {"slug": slug, "students": district["students"], "fleet_day_build_seconds": district["build_seconds"],
            "quiet_fleet_build_seconds": fleet_median, "alone_build_seconds": alone_median,
            "quiet_fleet_samples": in_fleet, "alone_samples": alone,
            "ratio": round(fleet_median / alone_median, 2) if alone_median else None,
            "difference": (phase_difference(fleet_phases, alone_phases)
                           if fleet_phases and alone_phases else None)}


# -- extrapolation -----------------------------------------------------------------------------------------
def extrapolate(day: dict[str, Any], settings: dict[str, Any], cores: int, districts: int = 1000,
                students: int = 2500, workers: int = 8) -> dict[str, Any]:
    """A fleet day of ``districts`` districts of ``students`` each on ``workers`` Celery
    workers like this machine, from the measured day: task seconds per district are fitted
    as fixed + per-student (least squares over the fleet), and the throughput of one
    worker is what this machine achieved (task seconds per wall second)."""
    points = [(d["students"], d["task_seconds"]) for d in day["districts"].values() if d["task_seconds"]]
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var_x = sum((x - mean_x) ** 2 for x, _ in points)
    slope = max(0.0, sum((x - mean_x) * (y - mean_y) for x, y in points) / var_x) if var_x else 0.0
    fixed = mean_y - slope * mean_x  # with no size effect measurable, every district costs the mean
    task_seconds = sum(y for _, y in points)
    throughput = task_seconds / day["wall_seconds"]  # task seconds per wall second on this machine
    per_district = fixed + slope * students
    hours = districts * per_district / (throughput * workers) / 3600
    return {"districts": districts, "students_each": students, "workers": workers,
            "task_seconds_per_district": round(per_district, 1), "fixed_seconds": round(fixed, 1),
            "seconds_per_1000_students": round(slope * 1000, 2),
            "throughput_task_seconds_per_wall_second": round(throughput, 2), "hours": round(hours, 2),
            "assumptions": (f"each worker is a machine like this one ({cores} cores, executor parallelism "
                            f"{settings['parallelism']}) and reaches the throughput measured here; the "
                            "warehouse and metadata database have their own servers sized to keep up (here they "
                            "shared the same cores); a district's tasks cost the fitted fixed part plus the "
                            "per-student part; the scheduler keeps every worker busy")}


# -- orchestration ----------------------------------------------------------------------------------------
def write_fleet_config(path: Path, plan: list[FleetDistrict]) -> Path:
    import yaml

    config = {"defaults": {"api_version": API_VERSION, "schedule": None, "page_size": 10000,
                           "extract_pool": "clever_extract", "build_pool": "clever_build",
                           "extract_retries": 1, "extract_retry_delay_seconds": 10},
              "districts": [{"slug": d.slug, "name": f"Fleet district {d.slug[-4:]} ({d.students} students)",
                             "expected_students": d.students} for d in plan]}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    plan = plan_fleet(args.districts, args.size_mix, args.seed)
    print(f"fleet of {len(plan)} districts, {sum(d.students for d in plan):,} students "
          f"(smallest {min(d.students for d in plan):,}, largest {max(d.students for d in plan):,})", flush=True)
    manifest = prepare_fleet(plan, work / "data", args.seed)
    serving = work / "serving"
    serving.mkdir(exist_ok=True)
    tokens = {d.slug: f"fleet-{d.slug}-{secrets.token_hex(6)}" for d in plan}
    import psutil

    cores = psutil.cpu_count()
    settings = fleet_settings(args.executor, args.parallelism, args.build_slots, args.extract_slots,
                              args.celery_workers, args.worker_concurrency)
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "git": _git_revision(),
        "districts": len(plan), "students": sum(d.students for d in plan), "size_mix": args.size_mix,
        "records": sum(sum(d["counts"].values()) for d in manifest["by_district"].values()),
        "plan": [asdict(d) for d in plan], "settings": settings, "machine": machine(), "days": {},
    }
    with ExitStack() as stack:
        server = stack.enter_context(postgres_server(work))
        postmaster_pid = int((server._real_data_dir() / "postmaster.pid").read_text().split()[0])
        for d in plan:
            _point(serving / d.slug, work / "data" / d.slug / "day1")
        api, sim_pid = stack.enter_context(fleet_simulator(serving, plan, tokens, work / "simulator.log"))
        broker, redis_pid = (stack.enter_context(redis_server(work)) if args.executor == "celery" else (None, None))
        from clever_devkit.pg_local import free_port

        api_port = free_port()
        env = airflow_env(work, server.url_for, args.executor, settings, broker, api_port)
        config = write_fleet_config(work / "districts.yml", plan)
        env.update({"CLEVER_DISTRICTS_FILE": str(config), "CLEVER_ARTIFACTS_DIR": str(work / "artifacts"),
                    "AIRFLOW_CONN_CLEVER_WAREHOUSE": server.url_for("warehouse")})
        for d in plan:
            env[f"AIRFLOW_CONN_CLEVER_{d.slug.upper()}"] = json.dumps(
                {"conn_type": "http", "host": api, "password": tokens[d.slug]})
        fleet = AirflowFleet(work, env, settings)
        stack.callback(fleet.stop)
        fleet.start()
        dag_ids = [f"clever_sync_{d.slug}" for d in plan] + [PROBE_DAG]
        print("waiting for the DAG processor to parse every DAG ...", flush=True)
        wait_for_dags(server.url_for("airflow"), dag_ids, fleet)
        roles = process_roles(fleet, sim_pid, postmaster_pid, redis_pid)
        for day in args.days:
            if day == "change":
                for d in plan:
                    _point(serving / d.slug, work / "data" / d.slug / "day2")
            print(f"day {day}: triggering {len(plan)} districts at once ...", flush=True)
            result = run_day(day, plan, fleet, server.url_for("airflow"), server.url_for("warehouse"), roles,
                             args.day_timeout)
            results["days"][day] = result
            save_results(results, work, args.executor, partial=True)  # a later failure keeps the days done
            print(f"  {day}: {result['wall_seconds']:.0f}s wall, {len(result['failed_runs'])} failed, "
                  f"median gap between tasks {result['median_task_gap_seconds']}s", flush=True)
        results["airflow_overhead_per_task_seconds"] = run_probe(fleet, server.url_for("airflow"))
        fleet.stop()
        if "unchanged" in results["days"] and args.alone_sample:
            print("building sampled districts alone ...", flush=True)
            day = results["days"]["unchanged"]
            built = sorted((d for d in day["districts"].values() if d["build_seconds"]), key=lambda d: d["students"])
            picks = {built[0]["slug"], built[len(built) // 2]["slug"], built[-1]["slug"],
                     day["first_build"]["slug"], day["last_build"]["slug"]}
            sample = [day["districts"][slug] for slug in sorted(picks)][: args.alone_sample]
            results["alone"] = alone_comparison(sample, server, env, config, api, tokens, serving, work / "data",
                                                list(args.days), args.alone_repeats)
    resync = results["days"].get("unchanged")
    results["extrapolation"] = extrapolate(resync, settings, cores) if resync else None
    results["summary"] = summarise(results)
    return results


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    days = results["days"]
    ratios = [row["ratio"] for row in results.get("alone", []) if row["ratio"]]
    met = {
        "resync_build_over_alone": bool(ratios) and max(ratios) <= TARGETS["resync_build_over_alone"],
        "unchanged_day_minutes": "unchanged" in days
        and days["unchanged"]["wall_seconds"] / 60 <= TARGETS["unchanged_day_minutes"],
        "change_day_minutes": "change" in days and days["change"]["wall_seconds"] / 60 <= TARGETS["change_day_minutes"],
        "no_failed_district": all(not d["failed_runs"] for d in days.values()),
        "extrapolated_hours_1000_districts_8_workers": bool(results.get("extrapolation"))
        and results["extrapolation"]["hours"] <= TARGETS["extrapolated_hours_1000_districts_8_workers"],
    }
    peaks: dict[str, float] = {}
    for day in days.values():
        for role, info in day["processes"].items():
            peaks[role] = max(peaks.get(role, 0.0), info["peak_rss_mib"])
    return {"max_resync_build_over_alone": max(ratios) if ratios else None, "targets_met": met,
            "peak_rss_mib": peaks}


def format_report(results: dict[str, Any]) -> str:
    lines = [f"clever-warehouse fleet bench: {results['districts']} districts, {results['students']:,} students, "
             f"executor {results['settings']['executor']} (parallelism {results['settings']['parallelism']})"]
    for name, day in results["days"].items():
        builds = [d["build_seconds"] for d in day["districts"].values() if d["build_seconds"] is not None]
        lines.append(f"  {name:<9} wall {day['wall_seconds']:>7.0f}s  failed {len(day['failed_runs'])}  "
                     f"task instances {day['task_instances']}  "
                     f"gap between tasks {day['median_task_gap_seconds']}s  "
                     f"builds median {_median(builds)}s max {max(builds, default=0):.1f}s")
        if day.get("first_build"):
            lines.append(f"            first build {day['first_build']}, last build {day['last_build']}")
    for row in results.get("alone", []):
        if row.get("error"):
            lines.append(f"  alone: {row['slug']} ({row['students']:,} students): failed, see the results file")
            continue
        lines.append(f"  alone: {row['slug']} ({row['students']:,} students): "
                     f"fleet day {row['fleet_day_build_seconds']}s, "
                     f"quiet fleet warehouse {row['quiet_fleet_build_seconds']}s, own warehouse "
                     f"{row['alone_build_seconds']}s, ratio {row['ratio']}")
        if row.get("difference"):
            d = row["difference"]
            lines.append(f"         over its own warehouse: dbt {d['dbt_seconds']:+}s (before the first node "
                         f"{d['before_first_node']:+}s, nodes {d['nodes_wall']:+}s, after {d['after_last_node']:+}s); "
                         "nodes: " + ", ".join(f"{n} {v:+}s" for n, v in d["nodes"].items()))
    if results.get("extrapolation"):
        e = results["extrapolation"]
        lines.append(f"  extrapolation: {e['districts']} districts x {e['students_each']} students on {e['workers']} "
                     f"workers: {e['hours']} h ({e['task_seconds_per_district']} task-s per district)")
    lines.append(f"  Airflow's own cost per task, idle scheduler: {results.get('airflow_overhead_per_task_seconds')}s")
    lines.append("  peak RSS MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in results["summary"]["peak_rss_mib"].items()))
    lines.append("  targets met: " + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                               for k, v in results["summary"]["targets_met"].items()))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="clever-bench-fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--districts", type=int, default=50)
    parser.add_argument("--size-mix", default=DEFAULT_SIZE_MIX,
                        help=f"share:min-max students, comma-separated (default {DEFAULT_SIZE_MIX})")
    parser.add_argument("--executor", choices=("local", "celery"), default="local")
    parser.add_argument("--parallelism", type=int, default=4, help="Airflow [core] parallelism (default 4)")
    parser.add_argument("--build-slots", type=int, default=2, help="slots of the clever_build pool (default 2)")
    parser.add_argument("--extract-slots", type=int, default=4, help="slots of the clever_extract pool (default 4)")
    parser.add_argument("--celery-workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=2, help="task slots per Celery worker (default 2)")
    parser.add_argument("--days", nargs="*", default=list(DAYS), choices=DAYS)
    parser.add_argument("--day-timeout", type=float, default=7200)
    parser.add_argument("--alone-sample", type=int, default=5, help="districts built alone to compare (0: none)")
    parser.add_argument("--alone-repeats", type=int, default=3,
                        help="builds per side of the alone comparison, medians compared (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR))
    parser.add_argument("--record", action="store_true", help="add the run to docs/PERFORMANCE.md's fleet table")
    args = parser.parse_args(argv)
    if args.days[:1] != ["first"]:
        parser.error("the days start with 'first' (each run starts from an empty warehouse)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)  # stop Airflow, the simulator and PostgreSQL on the way out
    results = run(args)
    results_file = save_results(results, Path(args.work_dir), args.executor)
    print(format_report(results))
    print(f"results: {results_file}")
    if args.record:
        record_in_doc(results)
    failed = any(day["failed_runs"] for day in results["days"].values())
    return 1 if failed else 0


def save_results(results: dict[str, Any], work: Path, executor: str, partial: bool = False) -> Path:
    stamp = results["started_at"].replace(":", "")
    results_file = work / "results" / f"fleet-{executor}-{stamp}{'.partial' if partial else ''}.json"
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    if not partial:
        results_file.with_suffix(".partial.json").unlink(missing_ok=True)
    return results_file


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def table_row(results: dict[str, Any]) -> str:
    days = results["days"]

    def wall(name: str) -> str:
        return f"{days[name]['wall_seconds'] / 60:.1f}" if name in days else "-"

    extrapolated = results.get("extrapolation") or {}
    peaks = results["summary"]["peak_rss_mib"]
    overhead = f"{results.get('airflow_overhead_per_task_seconds', '-')} / " \
               f"{days.get('unchanged', {}).get('median_task_gap_seconds', '-')}"
    return (f"| {results['started_at'][:10]} | {results['git']} | {results['settings']['executor']} | "
            f"{results['districts']} | {results['students']:,} | {wall('first')} | {wall('unchanged')} | "
            f"{wall('change')} | {results['summary']['max_resync_build_over_alone'] or '-'} | {overhead} | "
            f"{sum(len(d['failed_runs']) for d in days.values())} | "
            f"{max(peaks.get('task', 0), peaks.get('celery-worker', 0)):.0f} / {peaks.get('scheduler', 0):.0f} / "
            f"{peaks.get('postgres', 0):.0f} | {extrapolated.get('hours', '-')} |")


def record_in_doc(results: dict[str, Any], doc: Path = PERFORMANCE_DOC) -> None:
    marker = "<!-- fleet runs: make bench-fleet appends here -->"
    text = doc.read_text(encoding="utf-8")
    if marker not in text:
        raise RuntimeError(f"{doc} has no '{marker}' line")
    doc.write_text(text.replace(marker, f"{table_row(results)}\n{marker}"), encoding="utf-8")


if __name__ == "__main__":
    from clever_devkit.cli import run_main

    sys.exit(run_main(main))
