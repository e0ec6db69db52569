"""District configuration (config/districts.yml) and per-district settings.

Kept free of heavy imports: the DAG file reads it at parse time.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from clever.endpoints import MAX_PAGE_SIZE, check_api_version, check_endpoints
from clever.match_rules import MatchingConfig, parse_matching

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DISTRICTS_FILE = REPO_ROOT / "config" / "districts.yml"
_SLUG = re.compile(r"[a-z][a-z0-9_]{0,62}")  # fullmatch: "$" would let a final newline through
_DEFAULTS: dict[str, Any] = {
    "api_version": "v3.0",
    "schedule": "@daily",
    "page_size": MAX_PAGE_SIZE,
    "endpoints": ["districts", "schools", "users", "sections", "terms", "courses"],
    "mass_archive_threshold": 0.10,  # Clever's own "Requires Review": more than 10% deletions
    "mass_update_threshold": 0.75,  # ... or more than 75% updates of a type in one sync
    "mass_archive_floor": 10,
    "quarantine_threshold": 0.05,
    "quarantine_floor": 10,
    "http_max_attempts": 8,
    "http_backoff_max_seconds": 60.0,
    "http_page_timeout_seconds": 600.0,
    "extract_retries": 2,
    "extract_concurrency": 3,
    "extract_retry_delay_seconds": 120,
    "build_lock_timeout_seconds": 3600,
    "extract_pool": "default_pool",
    "build_pool": "default_pool",
    "landing_retention_days": 7,
    "expected_students": 100_000,
    "task_timeout_minutes": {},
    "alerts": None,
    "stale_after_hours": None,
}
TASKS = ("start_run", "extract", "validate", "approve", "build", "summarize")


STALE_MARGIN_HOURS = 12.0
_PRESET_HOURS = {"@hourly": 1, "@daily": 24, "@midnight": 24, "@weekly": 168, "@monthly": 31 * 24,
                 "@quarterly": 92 * 24, "@yearly": 366 * 24, "@annually": 366 * 24}


def schedule_gap_hours(schedule: str | None) -> float | None:
    """The longest gap between two runs of a schedule (a preset or a cron expression), in
    hours; None when it does not repeat."""
    if schedule is None or schedule in ("@once", "@continuous"):
        return None
    if schedule in _PRESET_HOURS:
        return float(_PRESET_HOURS[schedule])
    from datetime import datetime

    from croniter import croniter

    runs = croniter(schedule, datetime(2026, 1, 1))
    times = [runs.get_next(datetime) for _ in range(400)]
    return max((b - a).total_seconds() for a, b in itertools.pairwise(times)) / 3600


class ConfigError(ValueError):
    """config/districts.yml is missing or wrong; the message says where."""


@dataclass(frozen=True)
class AlertSettings:
    """Where a district's alerts go (``alerts:`` in the config): email addresses through an
    Airflow SMTP connection, and/or an Airflow HTTP connection whose host is a webhook URL."""

    email: tuple[str, ...] = ()
    smtp_conn_id: str = "smtp_default"
    webhook_conn_id: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.email or self.webhook_conn_id)


def _positive_or_none(value: Any, name: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: {name} must be a number > 0 (or null)")
    return float(value)


def _alert_settings(value: Any, where: str) -> AlertSettings:
    if value is None:
        return AlertSettings()
    if not isinstance(value, dict) or set(value) - {"email", "smtp_conn_id", "webhook_conn_id"}:
        raise ConfigError(f"{where}: alerts takes email (an address or a list), smtp_conn_id and webhook_conn_id")
    email = value.get("email") or ()
    email = (email,) if isinstance(email, str) else tuple(email)
    if not all(isinstance(e, str) and "@" in e for e in email):
        raise ConfigError(f"{where}: alerts.email must be email addresses")
    return AlertSettings(email, str(value.get("smtp_conn_id") or "smtp_default"), value.get("webhook_conn_id"))


@dataclass(frozen=True)
class DistrictConfig:
    slug: str
    name: str
    api_version: str
    schedule: str | None
    page_size: int
    endpoints: tuple[str, ...]
    mass_archive_threshold: float
    mass_archive_floor: int
    mass_update_threshold: float = 0.75  # share of a type's active records one sync may change
    quarantine_threshold: float = 0.05  # share of an endpoint's records validation may quarantine
    quarantine_floor: int = 10
    http_max_attempts: int = 8  # per request, for 429/5xx/time-outs (tenacity)
    http_backoff_max_seconds: float = 60.0
    http_page_timeout_seconds: float = 600.0  # a whole page, first byte to last; slower is retried
    extract_retries: int = 2  # Airflow retries of a whole endpoint extraction
    extract_retry_delay_seconds: int = 120
    extract_concurrency: int = 3  # endpoints of one run extracted at a time (threads of the extract task)
    build_lock_timeout_seconds: int = 3600  # wait for the district's lock, or a deploy of the dbt project
    matching: MatchingConfig = field(default_factory=MatchingConfig)  # rule order for app matching
    extract_pool: str = "default_pool"  # Airflow pool of the extract tasks
    build_pool: str = "default_pool"  # Airflow pool of approve and build (they queue on the build lock)
    # Landing rows of older runs are pruned after this many days (None: kept for ever);
    # what the pipeline still reads is always kept (clever.retention).
    landing_retention_days: int | None = 7
    # Time limits of the tasks and the DAG run scale with this (time_limits()); a run over
    # its limit fails instead of holding the district (max_active_runs=1) for ever.
    expected_students: int = 100_000
    alerts: AlertSettings = field(default_factory=AlertSettings)
    stale_after_hours: float | None = None  # None: the schedule's longest gap + STALE_MARGIN_HOURS
    task_timeout_minutes: dict[str, float] = field(default_factory=dict)  # per task, instead of the derived
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def dag_id(self) -> str:
        return f"clever_sync_{self.slug}"

    @property
    def connection_id(self) -> str:
        return f"clever_{self.slug}"

    def time_limits(self) -> dict[str, timedelta]:
        """Each task's execution_timeout: a fixed part for start-up, a lock wait or a slow
        page's retries, plus minutes per 10,000 expected students, several times what a
        million-student district measured (docs/PERFORMANCE.md) since a fleet shares the
        machine; ``task_timeout_minutes`` overrides any of them."""
        tens = max(1.0, self.expected_students / 10_000)
        lock = self.build_lock_timeout_seconds / 60
        minutes = {
            "start_run": 10,
            "extract": 30 + 1.0 * tens,  # 1M students measured 1 min; a page may take 15 min of retries
            "validate": 15 + 0.5 * tens,
            "approve": lock + 10 + 0.2 * tens,
            "build": lock + 20 + 1.0 * tens,
            "summarize": 15 + 0.2 * tens,
            **self.task_timeout_minutes,
        }
        return {name: timedelta(minutes=minutes[name]) for name in TASKS}

    def stale_limit_hours(self) -> float | None:
        """Hours without an approved extraction after which the district is stale: its
        schedule's longest gap between runs plus a margin (36 h for @daily), or
        ``stale_after_hours``; None for a district synced only by hand."""
        if self.stale_after_hours is not None:
            return self.stale_after_hours
        gap = schedule_gap_hours(self.schedule)
        return None if gap is None else gap + STALE_MARGIN_HOURS

    def dagrun_timeout(self) -> timedelta:
        """Every task's limit, and the extract task's for each of its retries."""
        limits = self.time_limits()
        retry = limits["extract"] + timedelta(seconds=self.extract_retry_delay_seconds)
        return sum(limits.values(), timedelta()) + self.extract_retries * retry


def districts_file() -> Path:
    return Path(os.environ.get("CLEVER_DISTRICTS_FILE") or DEFAULT_DISTRICTS_FILE)


def _district(entry: dict[str, Any], defaults: dict[str, Any], where: str) -> DistrictConfig:
    merged = {**_DEFAULTS, **defaults, **entry}
    slug = merged.pop("slug", None)
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        raise ConfigError(f"{where}: slug {slug!r} must be lower-case letters, digits or _ (starting with a letter)")
    try:
        endpoints = check_endpoints(list(merged.pop("endpoints")))
        api_version = check_api_version(str(merged.pop("api_version")))
    except ValueError as exc:
        raise ConfigError(f"{where} ({slug}): {exc}") from None
    page_size = int(merged.pop("page_size"))
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ConfigError(f"{where} ({slug}): page_size must be 1..{MAX_PAGE_SIZE}")
    try:
        matching = parse_matching(defaults.get("matching"), entry.get("matching"), f"{where} ({slug})")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    merged.pop("matching", None)
    threshold = float(merged.pop("mass_archive_threshold"))
    if not 0 < threshold <= 1:
        raise ConfigError(f"{where} ({slug}): mass_archive_threshold must be in (0, 1]")
    update_threshold = float(merged.pop("mass_update_threshold"))
    if not 0 < update_threshold <= 1:
        raise ConfigError(f"{where} ({slug}): mass_update_threshold must be in (0, 1]")
    quarantine_threshold = float(merged.pop("quarantine_threshold"))
    if not 0 <= quarantine_threshold <= 1:
        raise ConfigError(f"{where} ({slug}): quarantine_threshold must be in [0, 1]")
    timeouts = merged.pop("task_timeout_minutes") or {}
    if not isinstance(timeouts, dict) or set(timeouts) - set(TASKS) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in timeouts.values()):
        raise ConfigError(f"{where} ({slug}): task_timeout_minutes maps task names ({', '.join(TASKS)}) to "
                          "minutes > 0")
    expected_students = merged.pop("expected_students")
    if isinstance(expected_students, bool) or not isinstance(expected_students, int) or expected_students < 1:
        raise ConfigError(f"{where} ({slug}): expected_students must be a whole number > 0")
    retention = merged.pop("landing_retention_days")
    if retention is not None and (isinstance(retention, bool) or not isinstance(retention, int) or retention < 0):
        raise ConfigError(f"{where} ({slug}): landing_retention_days must be a whole number of days >= 0, "
                          f"or null to keep every run")
    return DistrictConfig(
        slug=slug,
        name=str(merged.pop("name", slug)),
        api_version=api_version,
        schedule=merged.pop("schedule"),
        page_size=page_size,
        endpoints=endpoints,
        mass_archive_threshold=threshold,
        mass_archive_floor=int(merged.pop("mass_archive_floor")),
        mass_update_threshold=update_threshold,
        quarantine_threshold=quarantine_threshold,
        quarantine_floor=max(0, int(merged.pop("quarantine_floor"))),
        http_max_attempts=max(1, int(merged.pop("http_max_attempts"))),
        http_backoff_max_seconds=float(merged.pop("http_backoff_max_seconds")),
        http_page_timeout_seconds=float(merged.pop("http_page_timeout_seconds")),
        extract_retries=max(0, int(merged.pop("extract_retries"))),
        extract_retry_delay_seconds=max(0, int(merged.pop("extract_retry_delay_seconds"))),
        extract_concurrency=max(1, int(merged.pop("extract_concurrency"))),
        build_lock_timeout_seconds=max(1, int(merged.pop("build_lock_timeout_seconds"))),
        matching=matching,
        extract_pool=str(merged.pop("extract_pool")),
        build_pool=str(merged.pop("build_pool")),
        landing_retention_days=retention,
        expected_students=expected_students,
        task_timeout_minutes={k: float(v) for k, v in timeouts.items()},
        alerts=_alert_settings(merged.pop("alerts"), f"{where} ({slug})"),
        stale_after_hours=_positive_or_none(merged.pop("stale_after_hours"), "stale_after_hours", f"{where} ({slug})"),
        options=merged,
    )


def load_districts(path: Path | None = None) -> list[DistrictConfig]:
    """Every district of the config; raises ConfigError naming every bad entry."""
    districts, errors = load_districts_tolerant(path)
    if errors:
        raise ConfigError("; ".join(errors.values()))
    return districts


def load_districts_tolerant(path: Path | None = None) -> tuple[list[DistrictConfig], dict[str, str]]:
    """The good districts of the config, and an error per bad entry (keyed by its slug, or
    ``districts[i]`` when it has none): one bad entry does not hide the others. An error in
    the file itself (missing, not YAML, bad defaults) still raises."""
    path = path or districts_file()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"districts file {path} does not exist (set CLEVER_DISTRICTS_FILE)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping with 'defaults' and 'districts'")
    defaults = document.get("defaults") or {}
    districts: list[DistrictConfig] = []
    errors: dict[str, str] = {}
    seen: set[str] = set()
    for i, entry in enumerate(document.get("districts") or []):
        key = str(entry.get("slug")) if isinstance(entry, dict) and entry.get("slug") else f"districts[{i}]"
        try:
            district = _district(entry, defaults, f"{path}: districts[{i}]")
        except ConfigError as exc:
            errors[key] = str(exc)
            continue
        except (TypeError, ValueError, AttributeError) as exc:  # a value of the wrong kind
            errors[key] = f"{path}: districts[{i}] ({key}): {exc}"
            continue
        if district.slug in seen:
            errors[f"{district.slug}#{i}"] = f"{path}: district slug {district.slug!r} appears twice"
            continue
        seen.add(district.slug)
        districts.append(district)
    return districts, errors


def get_district(slug: str, path: Path | None = None) -> DistrictConfig:
    for district in load_districts(path):
        if district.slug == slug:
            return district
    raise ConfigError(f"district {slug!r} is not in {path or districts_file()}")
