"""``make bench``: one district of N students, synced end to end on this machine.

Everything is real: the generated district is served over HTTP by the simulator (its own
process, from an id-sorted store on disk), a throwaway PostgreSQL server holds the
warehouse, and the pipeline runs as the DAG runs it. In one run it measures:

(a) ``floor``   read every page and COPY the raw records into a bare table, nothing else;
(b) ``naive``   requests + pandas ``DataFrame.to_sql`` of the same records (on a subset
                when the district is large, extrapolated linearly, and said so);
(c) ``full``    the full pipeline: extract, validate, approve (mass-archive guard), dbt
                build (staging, snapshots, marts, tests), summary;
(d) ``resync``  the same again with nothing changed: must write 0 history rows;
(e) ``change``  a sync after 1% of users and of student enrolments changed;
(f) ``events``  the same change applied by Clever's events, on a copy of the warehouse
                as (d) left it (the district has ``sync_mode: events``; (c)-(e) are
                triggered as full syncs).

Each reports wall time, rows/s and the peak RSS of every process doing the work (the
sampled worker, simulator and PostgreSQL backends), plus full/floor, naive/full,
change/full and events/full. It checks what each sync wrote (mart counts, zero history
on the re-sync, exactly the generated changes after (e) and the same after (f)), writes
the results as JSON and prints a table row for docs/PERFORMANCE.md.

    python -m clever_devkit.bench --size 1000000 [--runner airflow|steps] [--naive-max-rows N] ...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from clever.paths import LOCAL_DIR, REPO_ROOT
from clever_devkit import DEV_PYTHONPATH

DEFAULT_WORK_DIR = LOCAL_DIR / "bench"
PERFORMANCE_DOC = REPO_ROOT / "docs" / "PERFORMANCE.md"
SLUG = "bench"
API_VERSION = "v3.0"
TOKEN_ENV = "CLEVER_BENCH_TOKEN"
CHANGE_RATE = 0.01
ENDPOINTS = ("districts", "schools", "users", "sections", "terms", "courses")
DATA_FORMAT = 2  # bump when the generator's output changes, to regenerate cached data
SCENARIOS = ("floor", "naive", "full", "resync", "change", "events")
SYNCS = ("full", "resync", "change", "events")
EVENTS_BATCH = 2000  # changes per POST /_sim/events
# A throwaway warehouse tuned as one would tune a batch server with a few GiB to spare.
PG_SETTINGS = {
    "shared_buffers": "256MB",
    "work_mem": "64MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "effective_cache_size": "8GB",
}
TARGETS = {"full_over_floor": 2.0, "peak_rss_mib": 1024, "resync_history_rows": 0, "change_over_full": 0.5,
           "events_over_full": 0.1}
MIB = 1024 * 1024


# -- process sampling ----------------------------------------------------------------------------------
@dataclass
class _Seen:
    role: str
    name: str
    peak_rss: int = 0
    cpu: float = 0.0


class ProcessSampler:
    """Samples RSS and CPU time of the processes doing the work, by role, in a thread.

    ``roles`` maps a role to a function returning its current processes (psutil), so
    processes that start mid-run (Airflow tasks, PostgreSQL backends) are caught."""

    def __init__(self, roles: dict[str, Any], interval: float = 0.2):
        import psutil

        self._psutil = psutil
        self._roles = roles
        self._interval = interval
        self._seen: dict[int, _Seen] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._busy_start = self._busy()

    def _busy(self) -> float:
        times = self._psutil.cpu_times()
        return times.user + times.system + getattr(times, "nice", 0.0)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def sample(self) -> None:
        for role, find in self._roles.items():
            try:
                processes = find()
            except self._psutil.Error:
                continue
            for process in processes:
                try:
                    with process.oneshot():
                        rss = process.memory_info().rss
                        cpu = process.cpu_times()
                        name = self._seen[process.pid].name if process.pid in self._seen else _describe(process)
                except self._psutil.Error:
                    continue
                seen = self._seen.setdefault(process.pid, _Seen(role, name))
                seen.peak_rss = max(seen.peak_rss, rss)
                seen.cpu = max(seen.cpu, cpu.user + cpu.system)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        self.machine_cpu_seconds = self._busy() - self._busy_start

    def by_role(self) -> dict[str, dict[str, Any]]:
        roles: dict[str, dict[str, Any]] = {}
        for seen in self._seen.values():
            role = roles.setdefault(seen.role, {"peak_rss_mib": 0.0, "cpu_seconds": 0.0, "processes": 0,
                                                "largest": ""})
            rss = round(seen.peak_rss / MIB, 1)
            if rss >= role["peak_rss_mib"]:
                role["peak_rss_mib"], role["largest"] = rss, seen.name
            role["cpu_seconds"] = round(role["cpu_seconds"] + seen.cpu, 1)
            role["processes"] += 1
        return roles


def _describe(process: Any) -> str:
    try:
        command = process.cmdline()
    except Exception:
        return process.name()
    if process.name().startswith("postgres") and command:
        return command[0][:60]
    interesting = [part for part in command[1:] if not part.startswith("-")][:4]
    return " ".join([Path(command[0]).name, *interesting])[:80] if command else process.name()


# -- the district -------------------------------------------------------------------------------------------
def _expected_enrollments(directory: Path) -> int:
    from clever_devkit.district_store import iter_stored

    total = 0
    for section in iter_stored(directory, API_VERSION, "sections"):
        teachers = set(section.get("teachers") or []) | ({section["teacher"]} if section.get("teacher") else set())
        total += len(teachers) + len(set(section.get("students") or []))
    return total


def prepare_district(size: int, data_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Day 1 and day 2 (1% changed) of a ``size``-student district, cached by manifest."""
    from clever_devkit.district_store import derive_changes
    from clever_devkit.sample_district import generate

    manifest_file = data_dir / "manifest.json"
    if manifest_file.exists():
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("format") == DATA_FORMAT and manifest.get("size") == size and manifest.get("seed") == seed:
            return manifest
    shutil.rmtree(data_dir, ignore_errors=True)
    started = time.monotonic()
    counts = generate(data_dir / "day1", students=size, seed=seed, district_name="Benchmark Unified",
                      layout="sorted", versions=[API_VERSION])[API_VERSION]
    generated = time.monotonic() - started
    changes = derive_changes(data_dir / "day1", data_dir / "day2", CHANGE_RATE, seed)
    manifest = {
        "format": DATA_FORMAT, "size": size, "seed": seed, "counts": counts,
        "records": sum(counts[e] for e in ENDPOINTS),
        "enrollments": _expected_enrollments(data_dir / "day1"),
        "changes": asdict(changes),
        "bytes": sum(p.stat().st_size for p in (data_dir / "day1").rglob("*.jsonl")),
        "generate_seconds": round(generated, 1), "prepare_seconds": round(time.monotonic() - started, 1),
    }
    manifest_file.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


# -- servers ---------------------------------------------------------------------------------------------------
@contextmanager
def warehouse(work_dir: Path, db_url: str | None, keep_db: bool = False):
    """(database URL, postmaster pid or None, admin URL): a throwaway server unless ``db_url``
    is given (then a fresh database ``bench`` on it, kept afterwards with ``keep_db`` for
    EXPLAIN)."""
    import psycopg

    from clever_devkit.pg_local import LocalPostgres, free_port

    if db_url:
        admin = db_url
        name = "bench" if keep_db else f"bench_{os.getpid()}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{admin.rpartition('/')[0]}/{name}", None, admin
        finally:
            if not keep_db:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    base = work_dir / "pg"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    os.chmod(base, 0o755)
    server = LocalPostgres(data_dir=base / "pgdata", port=free_port(), fast_unsafe=True, settings=PG_SETTINGS)
    server.destroy()
    server.start()
    try:
        pid_file = server._real_data_dir() / "postmaster.pid"
        yield server.url, int(pid_file.read_text().split()[0]), server.url_for("postgres")
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def simulator(data_link: Path, token: str):
    """The simulator in its own process (so its memory and CPU are its own)."""
    env = {**os.environ, TOKEN_ENV: token, "PYTHONPATH": DEV_PYTHONPATH}
    process = subprocess.Popen(
        [sys.executable, "-m", "clever_devkit.simulator", "--port", "0", "--district",
         f"{SLUG}=env:{TOKEN_ENV}@{data_link}"], env=env, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"simulator did not start: {line.strip()}")
    url = line.split("listening on ", 1)[1].split()[0]
    try:
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def database_copy(admin_url: str, db_url: str, keep: bool = False):
    """A copy of the bench database as it is now, on the same server (its URL); dropped
    afterwards unless ``keep``. Nothing may be connected to the bench database meanwhile."""
    import psycopg

    base, _, name = db_url.rpartition("/")
    copy = f"{name}_events"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        # FILE_COPY: one checkpoint now, instead of the whole database through the WAL, whose
        # checkpoints would fall in the next scenario's timing
        strategy = " STRATEGY FILE_COPY" if conn.info.server_version >= 150000 else ""
        conn.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"{strategy}')
    try:
        yield f"{base}/{copy}"
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')


def post_events(api_url: str, changes_file: Path, batch: int = EVENTS_BATCH) -> int:
    """Announce the changes of ``changes_file`` (district_store.events_file: JSON lines as
    ``POST /_sim/events`` takes them) as the district's events, ``batch`` a request, in order."""
    posted = 0
    head = f'{{"district": {json.dumps(SLUG)}, "version": {json.dumps(API_VERSION)}, "changes": ['.encode()
    with changes_file.open("rb") as lines:
        while chunk := [line.rstrip(b"\n") for line in islice(lines, batch)]:
            body = head + b",".join(chunk) + b"]}"  # the lines as they are, never parsed
            request = urllib.request.Request(f"{api_url}/_sim/events", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=300) as response:
                response.read()
            posted += len(chunk)
    return posted


def _point(data_link: Path, target: Path) -> None:
    """Serve ``target``: swap the symlink atomically; the simulator reloads on the change."""
    tmp = data_link.with_name(data_link.name + ".new")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target.resolve(), target_is_directory=True)
    os.replace(tmp, data_link)


# -- scenario runners -------------------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    wall_seconds: float
    rows: int
    processes: dict[str, dict[str, Any]]
    machine_cpu_seconds: float
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.wall_seconds if self.wall_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        own_cpu = sum(p["cpu_seconds"] for p in self.processes.values())
        return {**asdict(self), "rows_per_second": round(self.rows_per_second),
                "other_cpu_seconds": round(max(0.0, self.machine_cpu_seconds - own_cpu), 1)}


def _roles(worker_root: int, sim_pid: int, postmaster_pid: int | None) -> dict[str, Any]:
    import psutil

    def worker() -> list[Any]:
        me = psutil.Process(worker_root)
        return [p for p in me.children(recursive=True) if p.pid != sim_pid and sim_pid not in _ancestors(p)]

    roles: dict[str, Any] = {"worker": worker, "simulator": lambda: [psutil.Process(sim_pid)]}
    if postmaster_pid:
        roles["postgres"] = lambda: psutil.Process(postmaster_pid).children()
    return roles


def _ancestors(process: Any) -> set[int]:
    try:
        return {p.pid for p in process.parents()}
    except Exception:
        return set()


def _measure(ctx: BenchContext, name: str, command: list[str]) -> tuple[Scenario, str]:
    if ctx.profile_dir is not None:  # py-spy samples the worker and its children, unchanged
        ctx.profile_dir.mkdir(parents=True, exist_ok=True)
        command = [str(Path(sys.executable).parent / "py-spy"), "record", "--subprocesses", "--nonblocking",
                   "--rate", "20", "--format", "speedscope",
                   "--output", str(ctx.profile_dir / f"{name}.speedscope.json"), "--", *command]
    with ProcessSampler(_roles(os.getpid(), ctx.sim_pid, ctx.postmaster_pid)) as sampler:
        started = time.monotonic()
        result = _succeeded(name, subprocess.run(command, env=ctx.env, text=True, capture_output=True, check=False))
        wall = time.monotonic() - started
    return Scenario(name, round(wall, 2), ctx.records, sampler.by_role(), round(sampler.machine_cpu_seconds, 1)), \
        result.stdout


def _succeeded(name: str, result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-8000:]}")
    return result


def _worker_result(stdout: str) -> dict[str, Any]:
    """The JSON line a worker printed last (py-spy, when profiling, prints after it)."""
    return json.loads(next(line for line in reversed(stdout.splitlines()) if line.startswith("{")))


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "clever_devkit.bench", *args]


def run_floor(ctx: BenchContext) -> Scenario:
    scenario, out = _measure(ctx, "floor", _python("_floor", "--api", ctx.api_url, "--db", ctx.db_url))
    scenario.detail = _worker_result(out)
    return scenario


def run_naive(ctx: BenchContext, max_rows: int) -> Scenario:
    fraction = min(1.0, max_rows / ctx.records)
    scenario, out = _measure(ctx, "naive", _python("_naive", "--api", ctx.api_url, "--db", ctx.db_url,
                                                   "--fraction", repr(fraction)))
    detail = _worker_result(out)
    measured = scenario.wall_seconds
    scenario.detail = {**detail, "fraction": round(fraction, 4), "measured_wall_seconds": measured,
                       "measured_rows": detail["rows"], "extrapolated": fraction < 1.0}
    if fraction < 1.0:  # linear in rows: each page costs the same, to_sql is row by row
        scenario.wall_seconds = round(measured * ctx.records / detail["rows"], 1)
    return scenario


def run_sync(ctx: BenchContext, name: str, sync_mode: str = "full") -> Scenario:
    """One sync of the district, triggered with ``sync_mode`` (the DAG's param): a real
    `airflow dags test` run, or the same pipeline steps in one plain process (``--runner
    steps``: no Airflow start-up, for quick checks)."""
    import psycopg

    if ctx.runner == "airflow":
        from clever_devkit.runner import BIN_DIR

        when = (ctx.logical_date + timedelta(minutes=ctx.sync_count)).isoformat()
        command = [str(BIN_DIR / "airflow"), "dags", "test", f"clever_sync_{SLUG}", when,
                   "--conf", json.dumps({"sync_mode": sync_mode})]
    else:
        command = _python("_steps", "--api", ctx.api_url, "--db", ctx.db_url, "--sync-mode", sync_mode)
    ctx.sync_count += 1
    started = time.time()
    scenario, out = _measure(ctx, name, command)
    with psycopg.connect(ctx.db_url, autocommit=True) as conn:
        run_id, external_run_id, summary = conn.execute(
            """SELECT r.sync_run_id, r.external_run_id, s.summary FROM clever_landing.sync_runs r
               JOIN clever_landing.run_summaries s USING (sync_run_id)
               WHERE r.district_slug = %s ORDER BY r.sync_run_id DESC LIMIT 1""", (SLUG,)).fetchone()
        marts = dict(conn.execute(
            """SELECT 'users', count(*) FILTER (WHERE NOT is_archived) FROM clever_marts.dim_users
               UNION ALL SELECT 'sections', count(*) FILTER (WHERE NOT is_archived) FROM clever_marts.dim_sections
               UNION ALL SELECT 'enrollments', count(*) FILTER (WHERE NOT is_archived)
                         FROM clever_marts.fct_enrollments""").fetchall())
    history = summary.get("history", {})
    endpoints = summary["endpoints"]
    scenario.rows = sum(e["rows"] for endpoint, e in endpoints.items() if endpoint != "events")  # records landed
    scenario.detail = {
        "sync_run_id": run_id,
        "mode": summary.get("mode"), "mode_reason": summary.get("mode_reason"),
        **({"events": summary["events"], "events_read": endpoints.get("events", {}).get("rows")}
           if "events" in summary else {}),
        "history_rows": sum(h["history_rows"] for h in history.values()),
        "history": {k: {m: v for m, v in h.items() if v} for k, h in history.items()},
        "active_in_marts": marts,
        "quarantined": summary.get("quarantined", {}),
        "validation_warnings": summary.get("validation_warnings", {}),
        "steps": _step_seconds(ctx, external_run_id) if ctx.runner == "airflow" else _worker_result(out)["steps"],
    }
    if ctx.runner == "airflow":
        steps = scenario.detail["steps"]
        scenario.detail["airflow_overhead_seconds"] = round(scenario.wall_seconds - sum(steps.values()), 1)
    scenario.detail["dbt"] = dbt_node_seconds(Path(ctx.env["CLEVER_ARTIFACTS_DIR"]), started)
    return scenario


def run_events(ctx: BenchContext, data_link: Path, day2: Path, db_url: str) -> Scenario:
    """Day 2 applied by events: its changes announced by the simulator (serving day 2), then
    one sync in auto mode on ``db_url`` (the warehouse as the re-sync left it, whose cursor
    the full sync recorded). Only the sync is timed."""
    from clever_devkit.district_store import events_file

    _point(data_link, day2)
    started = time.monotonic()
    posted = post_events(ctx.api_url, events_file(day2, API_VERSION))
    post_seconds = round(time.monotonic() - started, 1)
    ctx.use_database(db_url)
    # dbt's parse is seeded from the deploy's, whose profile named the other database: parse
    # again for the copy, as its deploy would have, or the timed build re-parses everything
    started = time.monotonic()
    _succeeded("dbt parse for the events run", subprocess.run(
        _python("_parse", "--api", ctx.api_url, "--db", db_url), env=ctx.env, text=True, capture_output=True,
        check=False))
    parse_seconds = round(time.monotonic() - started, 1)
    scenario = run_sync(ctx, "events", sync_mode="auto")
    scenario.detail.update(events_posted=posted, post_seconds=post_seconds, dbt_parse_seconds=parse_seconds)
    return scenario


def dbt_node_seconds(artifacts_dir: Path, since: float, top: int = 15) -> dict[str, Any]:
    """Where the sync's dbt build spent its time: the slowest nodes and the seconds per
    resource type (node seconds: dbt runs two threads) of the district build (its
    run_results.json in dbt_builds/<slug>) and, under ``deploy``, of the deploy build when
    the sync ran one first (the project's dbt_target). Files older than ``since`` (epoch
    seconds) are an earlier sync's."""
    timings: dict[str, Any] = {}
    for key, path in (("district", artifacts_dir / "dbt_builds" / SLUG / "run_results.json"),
                      ("deploy", artifacts_dir / "dbt_target" / "run_results.json")):
        try:
            if path.stat().st_mtime >= since:
                timings[key] = _node_seconds(json.loads(path.read_text(encoding="utf-8"))["results"], top)
        except (OSError, ValueError, KeyError):
            continue
    return {**timings.pop("district", {}), **timings}


def _node_seconds(results: list[dict[str, Any]], top: int) -> dict[str, Any]:
    by_type: dict[str, float] = {}
    for node in results:
        kind = node["unique_id"].split(".", 1)[0]
        by_type[kind] = round(by_type.get(kind, 0.0) + node["execution_time"], 1)
    slowest = sorted(results, key=lambda node: -node["execution_time"])[:top]
    return {"seconds_by_type": by_type,
            "slowest": {node["unique_id"].split(".", 2)[-1]: round(node["execution_time"], 1) for node in slowest}}


def _step_seconds(ctx: BenchContext, run_id: str | None) -> dict[str, float]:
    """Seconds per task of the Airflow run (mapped extract tasks summed)."""
    db = Path(ctx.env["AIRFLOW_HOME"]) / "airflow.db"
    steps: dict[str, float] = {}
    try:
        with sqlite3.connect(db) as conn:
            for task_id, seconds in conn.execute(
                    "SELECT task_id, sum(duration) FROM task_instance WHERE dag_id = ? AND run_id = ? "
                    "GROUP BY task_id", (f"clever_sync_{SLUG}", run_id)):
                steps[task_id] = round(seconds or 0.0, 2)
    except sqlite3.Error as exc:
        steps["unavailable"] = 0.0
        print(f"(task durations unavailable: {exc})", file=sys.stderr)
    return steps


# -- the loaders run in their own process ---------------------------------------------------------
def floor_main(api_url: str, db_url: str) -> dict[str, Any]:
    """Read every page and COPY (id, raw) into an unindexed table: the least work a loader does."""
    import psycopg

    from clever.client import CleverClient

    rows = 0
    with psycopg.connect(db_url, autocommit=True) as conn, \
            CleverClient(api_url, os.environ[TOKEN_ENV], district=SLUG, api_version=API_VERSION) as client:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench_floor")
        for endpoint in ENDPOINTS:
            conn.execute(f"DROP TABLE IF EXISTS bench_floor.{endpoint}")
            conn.execute(f"CREATE TABLE bench_floor.{endpoint} (clever_id text, raw jsonb NOT NULL)")
            for page in client.iter_pages(endpoint):
                with conn.transaction(), conn.cursor() as cur, \
                        cur.copy(f"COPY bench_floor.{endpoint} (clever_id, raw) FROM STDIN") as copy:
                    for record in page.records:
                        copy.write_row((record.get("id"),
                                        json.dumps(record, ensure_ascii=False, separators=(",", ":"))))
                rows += len(page.records)
    return {"rows": rows}


def naive_main(api_url: str, db_url: str, fraction: float, counts: dict[str, int]) -> dict[str, Any]:
    """What a user might write: fetch every page with requests, build a DataFrame, to_sql.

    It keeps an endpoint's records in memory (columns differ between records, so it
    cannot append page by page without losing some). With ``fraction`` < 1 it loads the
    first ``fraction`` of each endpoint."""
    import pandas as pd
    import requests
    import sqlalchemy

    engine = sqlalchemy.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE SCHEMA IF NOT EXISTS bench_naive"))
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {os.environ[TOKEN_ENV]}"
    rows = 0
    for endpoint in ENDPOINTS:
        budget = max(1, math.ceil(counts.get(endpoint, 0) * fraction)) if fraction < 1 else math.inf
        url: str | None = f"{api_url}/{API_VERSION}/{endpoint}?limit=10000"
        records: list[dict[str, Any]] = []
        while url and len(records) < budget:
            page = session.get(url, timeout=120)
            page.raise_for_status()
            body = page.json()
            records += [item["data"] for item in body["data"]]
            nxt = [link["uri"] for link in body.get("links", []) if link.get("rel") == "next"]
            url = api_url + nxt[0] if nxt else None
        if fraction < 1:
            records = records[:budget]
        frame = pd.json_normalize(records)
        frame = frame.map(lambda v: json.dumps(v) if isinstance(v, list | dict) else v)
        frame.to_sql(endpoint, engine, schema="bench_naive", if_exists="replace", index=False)
        rows += len(frame)
    return {"rows": rows}


def steps_main(api_url: str, db_url: str, sync_mode: str) -> dict[str, Any]:
    """The DAG's steps in order, in this process (clever.steps.run_sync: what each Airflow
    task runs), triggered with ``sync_mode`` as the DAG's param, timed one by one."""
    from clever import steps
    from clever.config import load_districts
    from clever.connections import CleverEndpoint, WarehouseTarget

    district = next(d for d in load_districts() if d.slug == SLUG)
    timings: dict[str, float] = {}

    def timed(step: str, seconds: float) -> None:
        timings[step] = round(seconds, 2)

    ctx = steps.SyncContext(target=WarehouseTarget.from_conninfo(db_url), district=district,
                            params=steps.RunParams.from_mapping({"sync_mode": sync_mode}),
                            api=CleverEndpoint(api_url, os.environ[TOKEN_ENV]))
    steps.run_sync(ctx, on_step=timed)
    return {"steps": timings}


def parse_main(db_url: str) -> dict[str, Any]:
    """dbt's parse of the project for the warehouse at ``db_url``, where every district
    build's parse starts from (clever.dbt_runner: the deploy's target directory)."""
    from clever.connections import WarehouseTarget
    from clever.dbt_runner import run_dbt

    run_dbt(WarehouseTarget.from_conninfo(db_url), ["parse"])
    return {}


# -- orchestration ----------------------------------------------------------------------------------------
@dataclass
class BenchContext:
    records: int
    api_url: str
    db_url: str
    sim_pid: int
    postmaster_pid: int | None
    env: dict[str, str]
    runner: str
    profile_dir: Path | None = None
    logical_date: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    sync_count: int = 0

    def use_database(self, db_url: str) -> None:
        """Later syncs write to ``db_url`` (the steps worker's --db, the DAG's warehouse connection)."""
        self.db_url = self.env["AIRFLOW_CONN_CLEVER_WAREHOUSE"] = db_url


def machine() -> dict[str, Any]:
    import psutil

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from clever_devkit.pg_local import find_pg_bin

    pg_version = subprocess.run([str(find_pg_bin() / "postgres"), "--version"], capture_output=True,
                                text=True, check=False).stdout.strip()
    return {"cpu": model, "cores": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "os": platform.platform(), "python": platform.python_version(), "postgres": pg_version,
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def _day2_history(changes: dict[str, int]) -> dict[str, dict[str, int]]:
    """The history rows day 2's changes must write, by data type (as the summary counts them)."""
    want = {"users": {"changed": changes["users_changed"], "history_rows": changes["users_changed"]},
            "sections": {"changed": changes["sections_changed"], "history_rows": changes["sections_changed"]},
            "enrollments": {k: v for k, v in {
                "added": changes["enrollments_added"], "archived": changes["enrollments_removed"],
                "history_rows": changes["enrollments_added"] + changes["enrollments_removed"]}.items() if v}}
    return {k: v for k, v in want.items() if v.get("history_rows")}


def check(results: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """What each sync must have written; a list of problems (empty when all hold)."""
    problems = []
    scenarios = results["scenarios"]
    counts, changes = manifest["counts"], manifest["changes"]
    floor = scenarios.get("floor")
    if floor and floor["detail"]["rows"] != manifest["records"]:
        problems.append(f"floor landed {floor['detail']['rows']} rows, expected {manifest['records']}")
    for name in SYNCS:
        scenario = scenarios.get(name)
        if not scenario:
            continue
        detail = scenario["detail"]
        mode = "events" if name == "events" else "full"
        if detail["mode"] != mode:
            problems.append(f"{name}: a {detail['mode']} sync ({detail['mode_reason']}), expected {mode}")
        # an events run lands only the changed records, a full sync every record
        rows = changes["users_changed"] + changes["sections_changed"] if name == "events" else manifest["records"]
        if scenario["rows"] != rows:
            problems.append(f"{name}: extracted {scenario['rows']} rows, expected {rows}")
        if detail["quarantined"]:
            problems.append(f"{name}: validation quarantined {detail['quarantined']}")
        expected = {"users": counts["users"], "sections": counts["sections"], "enrollments": manifest["enrollments"]}
        if name in ("change", "events"):
            expected["enrollments"] += changes["enrollments_added"] - changes["enrollments_removed"]
        if detail["active_in_marts"] != expected:
            problems.append(f"{name}: active records in marts {detail['active_in_marts']}, expected {expected}")
    if "resync" in scenarios and scenarios["resync"]["detail"]["history_rows"] != 0:
        problems.append(f"resync wrote {scenarios['resync']['detail']['history_rows']} history rows, expected 0")
    written = {name: {k: v for k, v in scenarios[name]["detail"]["history"].items() if v}
               for name in ("change", "events") if name in scenarios}
    for name, history in written.items():
        if history != _day2_history(changes):
            problems.append(f"{name} sync history {history}, expected {_day2_history(changes)}")
    if len(written) == 2 and written["events"] != written["change"]:
        problems.append(f"events sync history {written['events']} differs from the change sync's {written['change']}")
    events = scenarios.get("events", {}).get("detail", {})
    if events.get("mode") == "events":
        announced = changes["users_changed"] + changes["sections_changed"]
        if events["events_read"] != announced:
            problems.append(f"events run read {events['events_read']} events, {announced} were announced")
        want = {"users": {"updated": changes["users_changed"]}, "sections": {"updated": changes["sections_changed"]}}
        if events["events"]["changes"] != want:
            problems.append(f"events run applied {events['events']['changes']}, expected {want}")
    return problems


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    s = results["scenarios"]
    ratios: dict[str, float | None] = {}
    if "full" in s and "floor" in s:
        ratios["full_over_floor"] = round(s["full"]["wall_seconds"] / s["floor"]["wall_seconds"], 2)
    if "naive" in s and "full" in s:
        ratios["naive_over_full"] = round(s["naive"]["wall_seconds"] / s["full"]["wall_seconds"], 2)
    for name in ("change", "events"):
        if name in s and "full" in s:
            ratios[f"{name}_over_full"] = round(s[name]["wall_seconds"] / s["full"]["wall_seconds"], 2)
    peak = max((p["peak_rss_mib"] for name, sc in s.items() if name != "naive"
                for p in sc["processes"].values()), default=0.0)
    met = {
        "full_over_floor": ratios.get("full_over_floor") is not None
        and ratios["full_over_floor"] <= TARGETS["full_over_floor"],
        "peak_rss": peak <= TARGETS["peak_rss_mib"],
        "resync_history_rows": "resync" in s and s["resync"]["detail"]["history_rows"] == 0,
        **{ratio: ratios.get(ratio) is not None and ratios[ratio] <= TARGETS[ratio]
           for ratio in ("change_over_full", "events_over_full")},
    }
    return {"ratios": ratios, "peak_rss_mib_pipeline": peak, "targets_met": met}


def format_report(results: dict[str, Any]) -> str:
    lines = [f"clever-warehouse bench: {results['size']:,} students, {results['records']:,} records, "
             f"{results['enrollments']:,} enrolments; runner {results['runner']}",
             f"{'scenario':<8} {'wall s':>9} {'rows/s':>9}  peak RSS MiB (worker / simulator / postgres)  cpu s"]
    for name, sc in results["scenarios"].items():
        p = sc["processes"]
        rss = " / ".join(f"{p.get(r, {}).get('peak_rss_mib', 0):.0f}" for r in ("worker", "simulator", "postgres"))
        cpu = sum(x["cpu_seconds"] for x in p.values())
        note = " (extrapolated from a subset)" if sc["detail"].get("extrapolated") else ""
        lines.append(f"{name:<8} {sc['wall_seconds']:>9.1f} {sc['rows_per_second']:>9,}  {rss:<43} {cpu:>5.0f}{note}")
    summary = results["summary"]
    lines.append("ratios: " + ", ".join(f"{k} {v}" for k, v in summary["ratios"].items()))
    lines.append("targets met: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in summary["targets_met"].items()))
    for name in ("resync", "change", "events"):
        if name in results["scenarios"]:
            lines.append(f"{name} history: {results['scenarios'][name]['detail']['history']}")
    events = results["scenarios"].get("events", {}).get("detail", {})
    if events:
        lines.append(f"events run: mode {events['mode']}"
                     + (f", {events['events_read']:,} events read, applied {events['events']['changes']}"
                        if events["mode"] == "events" else f" ({events['mode_reason']})"))
    if results["problems"]:
        lines.append("CHECKS FAILED: " + "; ".join(results["problems"]))
    return "\n".join(lines)


def table_row(results: dict[str, Any]) -> str:
    s, summary = results["scenarios"], results["summary"]

    def wall(name: str) -> str:
        return f"{s[name]['wall_seconds']:,.0f}" if name in s else "-"

    peak = {role: max((sc["processes"].get(role, {}).get("peak_rss_mib", 0) for n, sc in s.items() if n != "naive"),
                      default=0) for role in ("worker", "simulator", "postgres")}
    r = summary["ratios"]
    subset = "*" if s.get("naive", {}).get("detail", {}).get("extrapolated") else ""
    return (f"| {results['started_at'][:10]} | {results['git']} | {results['size']:,} | {results['records']:,} | "
            f"{wall('floor')} | {wall('naive')}{subset}"
            f" | {wall('full')} | {wall('resync')} | {wall('change')} | {wall('events')} | "
            f"{r.get('full_over_floor', '-')} | {r.get('naive_over_full', '-')} | {r.get('change_over_full', '-')} | "
            f"{r.get('events_over_full', '-')} | "
            f"{peak['worker']:.0f} / {peak['simulator']:.0f} / {peak['postgres']:.0f} | "
            f"{s.get('resync', {}).get('detail', {}).get('history_rows', '-')} |")


def record_in_doc(row: str, doc: Path = PERFORMANCE_DOC) -> None:
    marker = "<!-- bench runs: make bench appends here -->"
    text = doc.read_text(encoding="utf-8")
    if marker not in text:
        raise RuntimeError(f"{doc} has no '{marker}' line")
    doc.write_text(text.replace(marker, f"{row}\n{marker}"), encoding="utf-8")


def _git_revision() -> str:
    result = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False)
    return result.stdout.strip() or "unknown"


def write_districts_file(path: Path) -> Path:
    """The bench district: an events district whose runs are all triggered (no schedules);
    the full syncs are asked for by the trigger's sync_mode."""
    import yaml

    config = {"districts": [{"slug": SLUG, "name": "Benchmark Unified", "api_version": API_VERSION,
                             "schedule": None, "page_size": 10000, "extract_retries": 0,
                             "sync_mode": "events", "events_schedule": None, "full_sync_schedule": None}]}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    from clever_devkit.runner import airflow_env, ensure_metadata_db

    work = Path(args.work_dir).resolve()
    data_dir = work / "data" / f"{args.size}"
    work.mkdir(parents=True, exist_ok=True)
    print(f"preparing a {args.size:,}-student district in {data_dir} ...", flush=True)
    manifest = prepare_district(args.size, data_dir)
    print(f"  {manifest['records']:,} records ({manifest['bytes'] / MIB:,.0f} MiB of JSON), "
          f"{manifest['enrollments']:,} enrolments; day 2 changes {manifest['changes']}", flush=True)
    data_link = work / "serving"
    _point(data_link, data_dir / "day1")
    token = os.environ.get(TOKEN_ENV) or f"bench-{os.urandom(8).hex()}"
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "git": _git_revision(),
        "size": args.size, "records": manifest["records"], "counts": manifest["counts"],
        "enrollments": manifest["enrollments"], "changes": manifest["changes"], "runner": args.runner,
        "machine": machine(), "postgres_settings": {"fsync": "off", "synchronous_commit": "off",
                                                    "full_page_writes": "off", **PG_SETTINGS},
        "scenarios": {},
    }
    with ExitStack() as stack:
        db_url, postmaster_pid, admin_url = stack.enter_context(warehouse(work, args.pg_url, args.keep_db))
        api_url, sim_pid = stack.enter_context(simulator(data_link, token))
        env = {**os.environ, TOKEN_ENV: token, "PYTHONPATH": DEV_PYTHONPATH,
               "CLEVER_DISTRICTS_FILE": str(write_districts_file(work / "districts.yml")),
               "CLEVER_ARTIFACTS_DIR": str(work / "artifacts"),
               "AIRFLOW_CONN_CLEVER_WAREHOUSE": db_url,
               f"AIRFLOW_CONN_{SLUG.upper()}": "",
               f"AIRFLOW_CONN_CLEVER_{SLUG.upper()}": json.dumps(
                   {"conn_type": "http", "host": api_url, "password": token}),
               "AIRFLOW_HOME": str(Path(args.airflow_home).resolve() if args.airflow_home else work / "airflow")}
        env.pop(f"AIRFLOW_CONN_{SLUG.upper()}")
        if args.runner == "airflow":
            env = airflow_env(env)
            ensure_metadata_db(env)
        ctx = BenchContext(manifest["records"], api_url, db_url, sim_pid, postmaster_pid, env, args.runner,
                           profile_dir=work / "profiles" if args.profile else None)
        plan = [s for s in SCENARIOS if s not in args.skip]
        # the events run starts from the warehouse as the re-sync left it: copied before day 2
        copy_before = next((s for s in plan if s in ("change", "events")), None) if "events" in plan else None
        events_db, copy_seconds = None, 0.0
        for name in plan:
            if name == copy_before:
                started = time.monotonic()
                events_db = stack.enter_context(database_copy(admin_url, db_url, args.keep_db))
                copy_seconds = round(time.monotonic() - started, 1)
                print(f"copied the warehouse for the events run ({copy_seconds}s)", flush=True)
            print(f"running {name} ...", flush=True)
            if name == "floor":
                scenario = run_floor(ctx)
            elif name == "naive":
                env["CLEVER_BENCH_NAIVE_COUNTS"] = json.dumps(manifest["counts"])
                scenario = run_naive(ctx, args.naive_max_rows)
            elif name == "events":
                scenario = run_events(ctx, data_link, data_dir / "day2", events_db)
                scenario.detail["warehouse_copy_seconds"] = copy_seconds
            else:
                if name == "change":
                    _point(data_link, data_dir / "day2")
                scenario = run_sync(ctx, name)
            results["scenarios"][name] = scenario.as_dict()
            print(f"  {name}: {scenario.wall_seconds:.1f}s, {scenario.rows_per_second:,.0f} rows/s", flush=True)
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["summary"] = summarise(results)
    results["problems"] = check(results, manifest)
    if not args.keep_data:
        shutil.rmtree(data_dir, ignore_errors=True)
        if data_link.is_symlink():
            data_link.unlink()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clever-bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    for name in ("_floor", "_naive", "_steps", "_parse"):  # the workers, run in their own process
        worker = sub.add_parser(name)
        worker.add_argument("--api", required=True)
        worker.add_argument("--db", required=True)
        worker.add_argument("--fraction", type=float, default=1.0)
        worker.add_argument("--sync-mode", choices=("auto", "full", "events"), default="full")
    parser.add_argument("--size", type=int, default=20_000, help="students (default 20000)")
    parser.add_argument("--runner", choices=("airflow", "steps"), default="airflow",
                        help="airflow: real `airflow dags test` runs (default); steps: the same pipeline steps "
                             "in one process")
    parser.add_argument("--naive-max-rows", type=int, default=150_000,
                        help="load at most this many rows with the naive loader, then extrapolate")
    parser.add_argument("--skip", nargs="*", default=[], choices=SCENARIOS)
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR))
    parser.add_argument("--pg-url", help="use this PostgreSQL server (superuser URL) instead of a throwaway one")
    parser.add_argument("--airflow-home", help="reuse this AIRFLOW_HOME (default: <work-dir>/airflow)")
    parser.add_argument("--results", help="JSON results file (default: <work-dir>/results/<size>-<time>.json)")
    parser.add_argument("--record", action="store_true", help="add the run's row to docs/PERFORMANCE.md")
    parser.add_argument("--keep-data", action="store_true", help="keep the generated district for the next run")
    parser.add_argument("--keep-db", action="store_true",
                        help="with --pg-url: keep the databases 'bench' and 'bench_events' (the events run's) "
                             "afterwards (to EXPLAIN ANALYZE their queries)")
    parser.add_argument("--profile", action="store_true",
                        help="record py-spy profiles of each measured worker into <work-dir>/profiles")
    args = parser.parse_args(argv)

    if args.command in ("_floor", "_naive", "_steps", "_parse"):
        if args.command == "_floor":
            out = floor_main(args.api, args.db)
        elif args.command == "_naive":
            out = naive_main(args.api, args.db, args.fraction, json.loads(os.environ["CLEVER_BENCH_NAIVE_COUNTS"]))
        elif args.command == "_parse":
            out = parse_main(args.db)
        else:
            out = steps_main(args.api, args.db, args.sync_mode)
        print(json.dumps(out))
        return 0

    if args.size < 112:
        parser.error("--size must be at least 112 (the sample district's edge cases)")
    results = run(args)
    results_file = Path(args.results) if args.results else (
        Path(args.work_dir) / "results" / f"{args.size}-{results['started_at'].replace(':', '')}.json")
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(format_report(results))
    print(f"results: {results_file}")
    print("table row: " + table_row(results))
    if args.record:
        record_in_doc(table_row(results))
    return 1 if results["problems"] else 0


if __name__ == "__main__":
    from clever_devkit.cli import run_main

    sys.exit(run_main(main))
