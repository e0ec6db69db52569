"""Shared fixtures: a throwaway PostgreSQL server, a fresh database per test, and the
Clever API simulator serving copies of the sample district."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

# dbt targets, logs, Data Docs and reports of steps run in-process go to a directory of
# this test session (set before clever.dbt_runner reads it): never into the checkout's
# .local/, and never shared by two parallel test workers.
_SESSION_ARTIFACTS = Path(tempfile.mkdtemp(prefix="clever-test-artifacts-"))
os.environ["CLEVER_ARTIFACTS_DIR"] = str(_SESSION_ARTIFACTS)

from clever_devkit.pg_local import LocalPostgres, free_port  # noqa: E402
from clever_devkit.simulator import SAMPLE_DISTRICT_DIR as SAMPLE_DISTRICT  # noqa: E402
from clever_devkit.simulator import CleverSimulator  # noqa: E402

DEMO_TOKEN = "test-token-9f8e7d6c5b4a-never-log-me"


def pytest_unconfigure(config) -> None:
    shutil.rmtree(_SESSION_ARTIFACTS, ignore_errors=True)


@pytest.fixture(autouse=True)
def _private_district_registry(tmp_path_factory, monkeypatch) -> None:
    """Each test its own district registry file (clever.registry): a district one test
    disconnects must not lose its schedule in another test's DAGs."""
    monkeypatch.setenv("CLEVER_REGISTRY_FILE", str(tmp_path_factory.mktemp("registry") / "district_registry.json"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalPostgres | str]:
    """A PostgreSQL server for the whole test session.

    CLEVER_TEST_PG_URL (a superuser URL) reuses an existing server; otherwise a
    throwaway server is initialised in a temporary directory and removed afterwards.
    """
    external = os.environ.get("CLEVER_TEST_PG_URL")
    if external:
        yield external
        return
    base = Path(tempfile.mkdtemp(prefix="clever-test-pg-"))
    os.chmod(base, 0o755)  # the postgres OS user must reach it when we run as root
    server = LocalPostgres(data_dir=base / "pgdata", port=free_port(), dbname="postgres", fast_unsafe=True)
    server.start()
    try:
        yield server
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)


def _admin_url(pg_server: LocalPostgres | str) -> str:
    return pg_server if isinstance(pg_server, str) else pg_server.url_for("postgres")


_DATABASES_IN_USE: set[str] = set()


@contextmanager
def database(pg_server: LocalPostgres | str, template: str | None = None, prefix: str = "test") -> Iterator[str]:
    """A new database on the test server (empty, or a copy of ``template``), dropped
    afterwards; yields its URL.

    Its name is one a database of this process had before (the first free of
    ``<prefix>_<pid>_<n>``): dbt keeps its parse of the project per connection, so a
    test's first build starts from the last test's parse instead of a full parse."""
    admin = _admin_url(pg_server)
    name = next(name for name in (f"{prefix}_{os.getpid()}_{n}" for n in itertools.count())
                if name not in _DATABASES_IN_USE)
    _DATABASES_IN_USE.add(name)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # left by a killed session
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        try:
            yield f"{admin.rpartition('/')[0]}/{name}"
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        _DATABASES_IN_USE.discard(name)


@pytest.fixture
def warehouse_url(pg_server: LocalPostgres | str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    with database(pg_server) as url:
        yield url


def copy_sample_district(target: Path) -> Path:
    """A private copy of the sample district at ``target``, for a test to change."""
    shutil.copytree(SAMPLE_DISTRICT, target, ignore=shutil.ignore_patterns("*.md"))
    return target


@pytest.fixture
def district_dir(tmp_path: Path) -> Path:
    """A private copy of the sample district that a test may change between syncs."""
    return copy_sample_district(tmp_path / "district")


@pytest.fixture
def simulator(district_dir: Path) -> Iterator[CleverSimulator]:
    sim = CleverSimulator({"demo": (DEMO_TOKEN, district_dir)}, seed=1234)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def synced_demo_template(pg_server: LocalPostgres | str, tmp_path_factory) -> Iterator[str]:
    """The name of a database holding the sample district synced once and built, made once
    per test worker: tests that start from there copy it (``synced_warehouse_url``)
    instead of syncing and building again."""
    from clever.config import get_district
    from tests.helpers import land_and_build

    district_dir = copy_sample_district(tmp_path_factory.mktemp("synced_template") / "district")
    with database(pg_server, prefix="synced_template") as url, \
            CleverSimulator({"demo": (DEMO_TOKEN, district_dir)}, seed=1234) as sim:
        land_and_build(url, get_district("demo"), sim.base_url, DEMO_TOKEN)
        yield url.rpartition("/")[2]


@pytest.fixture
def synced_warehouse_url(pg_server: LocalPostgres | str, synced_demo_template: str) -> Iterator[str]:
    """A copy of the sample district's warehouse after a first sync, for one test."""
    with database(pg_server, template=synced_demo_template) as url:
        yield url
