"""The steps of a district's sync run, in order, and the one way to run them.

    start_run → extract → validate → approve → build → summarize

Every step has one signature, ``step(context) -> result``: the context carries the
warehouse target, the district's settings, the run id and the trigger's params. The DAG
factory runs each step as an Airflow task; the benchmark and the tests run them all in one
process with :func:`run_sync`. Either way a step holds the district's run lease while it
works and, if it fails after extraction, marks the run failed naming the step
(:func:`step_scope`); ``summarize`` runs last whatever happened, like the DAG's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clever.catalog import check_endpoints
from clever.config import DistrictConfig
from clever.connections import CleverEndpoint, WarehouseTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunParams:
    """What a trigger may ask of a run (the DAG's params)."""

    full_refresh: bool = False  # validate every record; dbt --full-refresh
    allow_mass_archive: bool = False  # let the run pass the mass-archive and mass-update holds
    endpoints: tuple[str, ...] | None = None  # None: the district's configured endpoints
    sync_mode: str = "auto"  # events districts: "full" or "events" forces the run's mode (clever.events)
    archive_disconnected: bool = False  # a disconnected district's policy: archive every record (clever.registry)
    triggered: Mapping[str, Any] = field(default_factory=dict, compare=False)  # the trigger's params as given

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> RunParams:
        endpoints = params.get("endpoints")
        sync_mode = params.get("sync_mode") or "auto"
        if sync_mode not in ("auto", "full", "events"):
            raise ValueError(f"sync_mode {sync_mode!r}: expected auto, full or events")
        return cls(full_refresh=bool(params.get("full_refresh")),
                   allow_mass_archive=bool(params.get("allow_mass_archive")),
                   endpoints=check_endpoints(list(endpoints)) if endpoints else None, sync_mode=sync_mode,
                   archive_disconnected=bool(params.get("archive_disconnected")), triggered=dict(params))

    def as_dict(self, district: DistrictConfig) -> dict[str, Any]:
        """What the run records as its params (sync_runs.params): the trigger's, as given."""
        return dict(self.triggered) or {"full_refresh": self.full_refresh,
                                        "allow_mass_archive": self.allow_mass_archive,
                                        "endpoints": list(self.endpoints or district.endpoints)}


@dataclass(frozen=True)
class SyncContext:
    """Everything a step needs. ``results`` holds earlier steps' results by step name
    (``summarize`` reads the build's); ``api`` is the Clever endpoint and token (found
    from the district's Airflow connection when not given)."""

    target: WarehouseTarget
    district: DistrictConfig
    params: RunParams = RunParams()
    sync_run_id: int | None = None
    external_run_id: str | None = None
    api: CleverEndpoint | None = field(default=None, repr=False)
    results: Mapping[str, Any] = field(default_factory=dict)
    validation_docs_dir: Path | None = None  # Data Docs of the validation (default: the artifacts folder)
    # Library teachers' tokens by Clever id (default: the Airflow Variables, clever.connections)
    teacher_tokens: Mapping[str, str] | None = field(default=None, repr=False)

    @property
    def conninfo(self) -> str:
        return self.target.conninfo

    @property
    def run_id(self) -> int:
        if self.sync_run_id is None:
            raise ValueError(f"district {self.district.slug!r}: no sync run started yet")
        return self.sync_run_id

    def for_run(self, sync_run_id: int) -> SyncContext:
        return replace(self, sync_run_id=sync_run_id)

    def with_result(self, step: str, result: Any) -> SyncContext:
        return replace(self, results={**self.results, step: result})


def start_run(ctx: SyncContext) -> int:
    """A new sync run of the trigger's endpoints, else the config's: a full sync, or for an
    events district an events run when events can be used (clever.events.plan_mode)."""
    from clever import events, registry, runs

    if ctx.params.archive_disconnected:  # only a disconnected district, every endpoint, read from no one
        registry.check_archive_allowed(ctx.conninfo, ctx.district)
        return runs.start_run(ctx.conninfo, ctx.district, list(ctx.district.endpoints),
                              external_run_id=ctx.external_run_id, params=ctx.params.as_dict(ctx.district),
                              plan=lambda conn: runs.RunMode("full", ARCHIVE_REASON))
    return runs.start_run(ctx.conninfo, ctx.district, list(ctx.params.endpoints or ctx.district.endpoints),
                          external_run_id=ctx.external_run_id, params=ctx.params.as_dict(ctx.district),
                          plan=lambda conn: events.plan_mode(conn, ctx.district, ctx.params.sync_mode))


ARCHIVE_REASON = "disconnected: the disconnect policy archives every record"


def _archive_extraction(ctx: SyncContext) -> dict[str, Any]:
    """An archive run's extraction: every endpoint completed with no record, so approving
    it archives the district's records (the guard is passed by the policy)."""
    import psycopg

    from clever import runs

    with psycopg.connect(ctx.conninfo, autocommit=True) as conn:
        for endpoint in runs.get_sync_run(conn, ctx.run_id).endpoints:
            runs.endpoint_started(conn, ctx.run_id, endpoint)
            runs.endpoint_completed(conn, ctx.run_id, endpoint)
    runs.close_extraction(ctx.conninfo, ctx.run_id)
    return {"mode": "archive_disconnected", "extracted": {}}


def extract(ctx: SyncContext) -> dict[str, Any]:
    """A full sync: every endpoint of the run not completed yet (a retry re-reads only
    those), then the run is closed: completed only if every endpoint is. An events run:
    the events since the cursor, or a full sync of the run when Clever answers 404."""
    if ctx.params.archive_disconnected:
        return _archive_extraction(ctx)
    if ctx.district.integration == "library":  # the connected teachers' views; each teacher connects alone
        return {"mode": "full", **_extract_library(ctx)}
    from clever import registry
    from clever.client import CleverAPIError
    from clever.extract import ExtractionError
    from clever.pipeline import token_rejected

    try:
        result = _extract_from_clever(ctx)
    except (ExtractionError, CleverAPIError) as exc:
        # a scope refusal (403 "not in token's scopes") is a config matter: the token works
        registry.record_extraction(ctx.conninfo, ctx.district, "unauthorized" if token_rejected(exc) else "failed")
        raise
    registry.record_extraction(ctx.conninfo, ctx.district, "ok")
    return result


def _extract_from_clever(ctx: SyncContext) -> dict[str, Any]:
    import psycopg

    from clever import events, pipeline, runs
    from clever.connections import clever_endpoint

    api = ctx.api or clever_endpoint(ctx.district)
    with psycopg.connect(ctx.conninfo, autocommit=True) as conn:
        mode, events_to = conn.execute("SELECT mode, events_to FROM clever_landing.sync_runs WHERE sync_run_id = %s",
                                       (ctx.run_id,)).fetchone()
    if mode == "events":
        try:
            return events.extract_events_run(ctx.conninfo, ctx.district, ctx.run_id, api.base_url, api.token)
        except events.EventsUnavailable as exc:
            log.warning("district %s, run %d: %s; falling back to a full sync", ctx.district.slug, ctx.run_id, exc)
            runs.fall_back_to_full(ctx.conninfo, ctx.run_id, f"events unavailable, Clever answered: {exc}")
            mode = "fallback"
    if ctx.district.sync_mode == "events" and (mode == "fallback" or events_to is None):
        events.mark_full_sync_cursor(ctx.conninfo, ctx.district, ctx.run_id, api.base_url, api.token)
    return {"mode": "full", **pipeline.extract_run(ctx.conninfo, ctx.district, ctx.run_id, api.base_url, api.token)}


def _extract_library(ctx: SyncContext) -> dict[str, Any]:
    from clever import library
    from clever.connections import library_api_url, library_teacher_token

    base_url = ctx.api.base_url if ctx.api else library_api_url(ctx.district)
    return library.extract_run(ctx.conninfo, ctx.district, ctx.run_id, base_url,
                               ctx.teacher_tokens.get if ctx.teacher_tokens is not None else library_teacher_token)


def validate(ctx: SyncContext) -> dict[str, Any]:
    from clever import validation

    return validation.validate_run(ctx.conninfo, ctx.run_id, quarantine_threshold=ctx.district.quarantine_threshold,
                                   quarantine_floor=ctx.district.quarantine_floor, full=ctx.params.full_refresh,
                                   docs_dir=ctx.validation_docs_dir)


def approve(ctx: SyncContext) -> list[str]:
    from clever import pipeline

    district = ctx.district
    return pipeline.approve(ctx.conninfo, ctx.run_id, threshold=district.mass_archive_threshold,
                            floor=district.mass_archive_floor,
                            allow_mass_archive=ctx.params.allow_mass_archive or ctx.params.archive_disconnected,
                            change_threshold=district.mass_update_threshold,
                            lock_timeout_seconds=district.build_lock_timeout_seconds)


def build(ctx: SyncContext) -> dict[str, Any]:
    """The district's dbt build: complete (with its data tests and the rollover report) for
    a full sync, and for an events run when the district's last complete build is older
    than ``events_complete_build_hours``; else an events run's lighter build."""
    from clever import events, pipeline

    complete = events.complete_build_due(ctx.conninfo, ctx.district, ctx.run_id)
    return pipeline.build(ctx.target, ctx.district, full_refresh=ctx.params.full_refresh,
                          lock_timeout_seconds=ctx.district.build_lock_timeout_seconds, complete=complete)


def summarize(ctx: SyncContext) -> dict[str, Any]:
    """Close a run whose extraction failed for good, record the run summary (a failed run
    too), and after a successful build prune older landing rows nothing reads any more
    (clever.retention). The summary is printed (the task's log); ``summary["built"]``
    says whether the run succeeded."""
    from clever import runs, summary
    from clever.retention import prune_landing

    build_result = ctx.results.get("build") or {}
    started = build_result.get("started_at")
    extra = {"data_docs": summary.data_docs_hint(ctx.district.slug, ctx.run_id), "dbt_docs": summary.dbt_docs_hint(),
             "dbt_test_warnings": build_result.get("warnings") or {}, "complete_build": build_result.get("complete")}
    runs.close_if_open(ctx.conninfo, ctx.run_id)
    result = summary.summarize(ctx.conninfo, ctx.run_id, started, extra=extra)
    print(summary.format_summary(result), flush=True)  # in the task's log, a failed prune below too
    if started is not None and ctx.params.archive_disconnected:
        from clever.registry import mark_archived

        mark_archived(ctx.conninfo, ctx.district, ctx.run_id)
    if started is not None:
        pruned = prune_landing(ctx.conninfo, ctx.district.slug, ctx.district.landing_retention_days)
        result["landing_rows_pruned"] = sum(p.rows for p in pruned)
    return result


Step = Callable[[SyncContext], Any]
# In order; the names are the DAG's task ids (config.TASKS).
STEPS: tuple[tuple[str, Step], ...] = (
    ("start_run", start_run), ("extract", extract), ("validate", validate), ("approve", approve),
    ("build", build), ("summarize", summarize),
)
# Steps whose failure fails the run (naming the step). Extraction closes the run itself;
# summarize records whatever happened.
FAILS_RUN = frozenset({"validate", "approve", "build"})


@contextmanager
def step_scope(ctx: SyncContext, step: str) -> Iterator[None]:
    """A step of the run at work: it holds the district's run lease (no other run of the
    district starts meanwhile) and, for the steps in FAILS_RUN, marks the run failed naming
    the step when the block raises (a time limit and SIGTERM included: BaseExceptions)."""
    from clever import runs

    with runs.run_lease(ctx.conninfo, ctx.district.slug):
        try:
            yield
        except BaseException as exc:
            if step in FAILS_RUN and ctx.sync_run_id is not None:
                runs.fail_run(ctx.conninfo, ctx.sync_run_id, step, exc)
            raise


def run_step(ctx: SyncContext, step: str) -> Any:
    """Run one step by name (start_run needs no lease: it takes the run's own)."""
    function = dict(STEPS)[step]
    if step == "start_run":
        return function(ctx)
    with step_scope(ctx, step):
        return function(ctx)


def run_sync(ctx: SyncContext, *, skip: frozenset[str] = frozenset(),
             on_step: Callable[[str, float], None] | None = None) -> SyncContext:
    """Every step in order in this process, as the DAG runs them (``skip``: steps left out,
    e.g. tests that need no validation). After a failed step the rest are skipped but
    ``summarize`` still runs, then the failure is raised. ``on_step(name, seconds)`` is
    called after each step. Returns the context with the run id and every step's result."""
    import time

    failure: BaseException | None = None
    for name, _ in STEPS:
        if name in skip or (failure is not None and name != "summarize"):
            continue
        started = time.monotonic()
        try:
            result = run_step(ctx, name)
        except Exception as exc:
            if name == "start_run":
                raise
            failure = failure or exc  # the cause, not summarize's failure after it
            continue
        finally:
            if on_step is not None:
                on_step(name, time.monotonic() - started)
        ctx = ctx.for_run(result) if name == "start_run" else ctx.with_result(name, result)
    if failure is not None:
        raise failure
    return ctx
