"""Clever Data API simulator: a small stdlib HTTP server for tests, demos and benchmarks.

It serves districts as Clever does: ``GET /{v3.0|v3.1}/{endpoint}`` lists records sorted
by id, ``{"data": [{"data": record, "uri": ...}], "links": [self, prev?, next?]}``, paged
with ``limit`` (default 100, 1..10000, above: 413), ``starting_after`` and
``ending_before``; ``GET /{version}/{endpoint}/{id}`` answers one record or 404
(unshared); ``/users?role=student|teacher|staff|district_admin|contact`` keeps users with
that role. Requests need ``Authorization: Bearer <district token>``, else 401; each token
may make ``rate_limit_per_minute`` requests per 60-second window, then gets 429 with
``Retry-After`` and ``X-RateLimit-Reset``. Tokens are never echoed or logged.

A district is ``DistrictSpec(slug, token, data_dir)``: ``data_dir/v3.0/`` and
``data_dir/v3.1/`` hold ``districts.json``, ``schools.json``, ``users.json``,
``sections.json``, ``terms.json``, ``courses.json`` and optionally ``resources.json``, each
a JSON array of records in any order (see ``clever_devkit.sample_district``). Files are re-read
whenever one changes (inode, mtime or size), so a test can rewrite them between "days".
A directory in the id-sorted layout of ``clever_devkit.district_store`` (``*.jsonl`` with an
index; for districts of any size) is served from disk page by page instead of being
loaded. Other record sources implement :class:`DataSource`.

Integrations: a district is served with the scope of its app's integration
(``DistrictSpec(integration=...)``, clever.integrations; ``--integration SLUG=sso``):
``secure_sync`` (the default) reads every endpoint; ``sso`` (District SSO without Secure
Sync) reads ``districts`` and ``users`` only, and any other endpoint, events included,
answers 403 ``{"message": "Resource not in token's scopes"}`` as Clever does. The shipped
``sample_data/sso_district`` is such a district's data (``clever_devkit.sample_district
--integration sso``): users with names, emails (not all) and roles, nothing else.

Events (Clever's Events API, clever_devkit.events_log): ``GET /{version}/events`` lists the
district's created, updated and deleted records since ``starting_after``, as Clever pages
them, and ``/{version}/events/{id}`` one event. The changes between two states of a
district's JSON files become events when the files are re-read; a district served from a
sorted store gets them from ``add_events`` (``POST /_sim/events``). Events are kept for
``events_retention_seconds`` (30 days); with events off (``DistrictSpec(events=False)``,
``set_events``, ``POST /_sim/events/settings``) or a cursor not held, the answer is 404.

Faults (``Faults``; set at construction, with ``--fault key=value``, by
``CleverSimulator.set_faults(**kw)`` or ``POST /_sim/faults`` with a JSON object; each
setting replaces the previous one and restarts page counts). They apply to data routes
only, after authentication and rate limiting; probabilistic ones draw from a
``random.Random(seed)``, so a given request sequence always gets the same faults.

================================  =============================================================
``rate_limit_probability``        0..1: answer 429 with ``Retry-After: retry_after`` (default 1 s)
``server_error_probability``      0..1: answer ``server_error_status`` (503 default; 500, 502)
``slow_seconds``                  sleep before answering (with ``slow_probability``, default 1)
``fail_endpoint``                 that endpoint (lists and single records) answers 500 after
                                  ``fail_after_pages`` requests to it
``malformed_json_endpoint``       200 with a cut-off JSON body, after ``malformed_after_pages``
``truncated_page_endpoint``       Content-Length promises more than is sent, then the connection
                                  closes, after ``truncated_after_pages`` requests
``drop_connection_probability``   0..1: close the connection without answering
``max_faults``                    only this many requests get faults, then all succeed: with
                                  probability 1 this is "fail N times, then recover"
================================  =============================================================

Onboarding (``app_credentials=(client_id, client_secret)``, CLI ``--app id:secret``):
``GET /oauth/tokens?owner_type=district`` with HTTP basic auth lists every connected
district's token as Clever does (``{"data": [{"id", "created", "owner": {"type":
"district", "id": <its district record's id>}, "access_token", "scopes"}], "links"}``).
``disconnect(slug)`` takes a district off the list and makes its token answer 401;
``reconnect(slug, token=None)`` lists it again (with a new token, if given).
Clever Library (``DistrictSpec(teachers={token: teacher id})``, a district served from JSON
files): each teacher token is a teacher who connected the application through the Clever
Library, and reads only that teacher's view, cut down to what Clever sends a Library app
(a user's ``id``, ``district``, ``name``, ``roles`` with no role fields, ``created``,
``last_modified``; a teacher's ``email``; a student's first name and last *initial*; a
section without ``school``, ``course``, ``term_id``, ``sis_id``, ``section_number`` and
``ext``): ``GET /{version}/me`` (``{"type": "teacher", "data": {"id", "district", "type"}}``),
``/{version}/users/{own id}`` (and a student of the teacher's), ``/{version}/districts/{own
district}``, and, paged as lists are, ``/{version}/users/{own id}/sections`` (sections
listing the teacher in ``teacher`` or ``teachers``) and ``/{version}/users/{own
id}/mystudents`` (the students of those sections). Another user's id answers 404 (not
shared), another user's sections or students, and every other route, 403 ("Resource not
in token's scopes"). ``revoke_teacher(teacher_id)`` (``POST /_sim/revoke``
``{"teacher": "<id>"}``) makes a teacher's token answer 401, as when the teacher
disconnects the application.

Control endpoints (no auth; bind to localhost): ``GET|POST /_sim/faults``,
``GET /_sim/stats`` (``requests``, ``by_status``, ``by_path``, ``faults_injected``),
``POST /_sim/revoke`` ``{"token_district": "<slug>"}``, ``POST /_sim/disconnect``
``{"district": "<slug>"}``, ``POST /_sim/reconnect`` ``{"district": "<slug>", "token":
"<new>"}``, ``POST /_sim/reset`` (faults, revocations and disconnects, stats, rate-limit
windows) and ``GET /_sim/health``.

CLI: ``python -m clever_devkit.simulator --port 8765 --district demo=<token>@<dir> --fault
server_error_probability=0.1``; without ``--district`` it serves the shipped sample
district as ``demo`` with the token in ``CLEVER_SIM_TOKEN`` (default
``demo-district-token``). A token written ``env:NAME`` is read from that variable.
``--district sso_demo=<token>@devkit/clever_devkit/sample_data/sso_district --integration
sso_demo=sso`` serves the sample District SSO district with an SSO token's scope.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import hashlib
import json
import logging
import math
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from clever.catalog import API_VERSIONS, ENDPOINTS, MAX_PAGE_SIZE
from clever.integrations import DEFAULT_INTEGRATION, INTEGRATION_NAMES, integration
from clever_devkit.district_store import Page, SortedFileDataSource, is_sorted_store
from clever_devkit.events_log import CLEVER_RETENTION_SECONDS, Change, EventLog, EventsUnavailable, diff_events

log = logging.getLogger(__name__)

Record = dict[str, Any]
RecordsById = dict[str, dict[str, Record]]  # endpoint -> id -> record

ROLES = ("student", "teacher", "staff", "district_admin", "contact")
DEFAULT_PAGE_SIZE = 100
RATE_LIMIT_WINDOW_SECONDS = 60.0
SERVER_ERROR_STATUSES = (500, 502, 503)
SAMPLE_DISTRICT_DIR = Path(__file__).resolve().parent / "sample_data" / "certification_isd"
SAMPLE_SSO_DISTRICT_DIR = SAMPLE_DISTRICT_DIR.parent / "sso_district"
OUT_OF_SCOPE_MESSAGE = "Resource not in token's scopes"  # Clever's answer to an app without Secure Sync
DEFAULT_TOKEN = "demo-district-token"
READY_MESSAGE = "Clever API simulator listening on {url} (districts: {slugs})"


# -- data sources ----------------------------------------------------------------------------
class DataSource(Protocol):
    """Where a district's records come from; must be safe to call from many threads."""

    def list_page(self, version: str, endpoint: str, starting_after: str | None, ending_before: str | None,
                  limit: int, role: str | None) -> Page: ...

    def get(self, version: str, endpoint: str, record_id: str) -> Record | None: ...


class _Collection:
    """Records sorted by id (as strings, as Clever sorts), paged by bisecting the ids."""

    def __init__(self, records: list[Record]):
        self.records = sorted(records, key=lambda r: r["id"])
        self.ids = [r["id"] for r in self.records]

    def page(self, starting_after: str | None, ending_before: str | None, limit: int) -> Page:
        if starting_after is not None:
            start = bisect.bisect_right(self.ids, starting_after)
            stop = min(start + limit, len(self.ids))
        elif ending_before is not None:
            stop = bisect.bisect_left(self.ids, ending_before)
            start = max(0, stop - limit)
        else:
            start, stop = 0, min(limit, len(self.ids))
        return Page(self.records[start:stop], start > 0, stop < len(self.ids))


class _Snapshot:
    """One API version of a district as loaded from its files."""

    def __init__(self, signature: tuple[Any, ...], by_endpoint: dict[str, list[Record]]):
        self.signature = signature
        self.collections = {endpoint: _Collection(records) for endpoint, records in by_endpoint.items()}
        users = self.collections["users"].records
        self.by_role = {role: _Collection([u for u in users if (u.get("roles") or {}).get(role) is not None])
                        for role in ROLES}
        self.by_id = {endpoint: {r["id"]: r for r in c.records} for endpoint, c in self.collections.items()}


class FileDataSource:
    """A district held in memory from ``data_dir/<version>/<endpoint>.json`` files.

    Every call compares the files' (inode, mtime, size) with those last loaded and
    re-reads the version if any changed. A file that does not parse (say, caught half
    written) keeps the previous snapshot in service until the next call retries.
    """

    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)
        self._snapshots: dict[str, _Snapshot] = {}
        self._lock = threading.Lock()
        # Told of every re-read: (version, records before, records after), by endpoint and id.
        self.on_reload: Callable[[str, RecordsById, RecordsById], None] | None = None

    def load(self, versions: Sequence[str] = API_VERSIONS) -> None:
        """Read these versions' files now if they changed (at start: the state later
        changes are compared with)."""
        for version in versions:
            self._snapshot(version)

    def list_page(self, version: str, endpoint: str, starting_after: str | None, ending_before: str | None,
                  limit: int, role: str | None) -> Page:
        snapshot = self._snapshot(version)
        collection = snapshot.by_role[role] if role else snapshot.collections[endpoint]
        return collection.page(starting_after, ending_before, limit)

    def get(self, version: str, endpoint: str, record_id: str) -> Record | None:
        return self._snapshot(version).by_id[endpoint].get(record_id)

    def snapshot(self, version: str) -> _Snapshot:
        """The version's records as now on disk (re-read if the files changed)."""
        return self._snapshot(version)

    def _signature(self, version: str) -> tuple[Any, ...]:
        signature = []
        for endpoint in ENDPOINTS:
            try:
                st = (self.data_dir / version / f"{endpoint}.json").stat()
            except FileNotFoundError:
                signature.append(None)
            else:
                signature.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(signature)

    def _snapshot(self, version: str) -> _Snapshot:
        with self._lock:
            current = self._snapshots.get(version)
            signature = self._signature(version)  # taken before reading: a later change reloads
            if current is not None and current.signature == signature:
                return current
            try:
                loaded = _Snapshot(signature, {e: self._read(version, e) for e in ENDPOINTS})
            except (OSError, ValueError) as exc:
                if current is None:
                    raise
                log.warning("keeping previous %s data of %s: %s", version, self.data_dir, exc)
                return current
            self._snapshots[version] = loaded
            if current is not None and self.on_reload is not None:
                try:
                    self.on_reload(version, current.by_id, loaded.by_id)
                except Exception:  # the new state is served all the same
                    log.exception("could not announce the changes of %s %s", self.data_dir, version)
            return loaded

    def _read(self, version: str, endpoint: str) -> list[Record]:
        """A missing file means the district shares nothing of that type."""
        path = self.data_dir / version / f"{endpoint}.json"
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        if not isinstance(records, list) or not all(
                isinstance(r, dict) and isinstance(r.get("id"), str) for r in records):
            raise ValueError(f"{path} must be a JSON array of objects with a string 'id'")
        return records


# What Clever sends a Library app (certification types: teacher name and email, student
# first name and last initial, section information).
LIBRARY_USER_FIELDS = ("id", "district", "name", "roles", "created", "last_modified")
LIBRARY_SECTION_DROPPED = ("school", "course", "term_id", "sis_id", "section_number", "ext")


def library_user(record: Record) -> Record:
    """A user as a Library app receives it: no role fields, a student's last initial only,
    a teacher's email."""
    cut = {key: record[key] for key in LIBRARY_USER_FIELDS if key in record}
    roles = [role for role in ("teacher", "student") if role in (record.get("roles") or {})]
    cut["roles"] = {role: {} for role in roles}
    name = record.get("name") or {}
    cut["name"] = {key: name[key] for key in ("first", "last") if key in name}
    if "student" in roles and isinstance(name.get("last"), str):
        cut["name"]["last"] = name["last"][:1]
    if "teacher" in roles and "email" in record:
        cut["email"] = record["email"]
    return cut


def library_section(record: Record) -> Record:
    return {key: value for key, value in record.items() if key not in LIBRARY_SECTION_DROPPED}


def _teaches(section: Record, teacher_id: str) -> bool:
    return section.get("teacher") == teacher_id or teacher_id in (section.get("teachers") or [])


class LibraryView:
    """What one Library teacher's token sees of a district's records."""

    def __init__(self, snapshot: _Snapshot, teacher_id: str):
        self._snapshot, self._teacher_id = snapshot, teacher_id
        teacher = snapshot.by_id["users"].get(teacher_id)
        self.teacher = teacher if teacher is not None and "teacher" in (teacher.get("roles") or {}) else None

    def _own_sections(self) -> list[Record]:
        return [s for s in self._snapshot.collections["sections"].records if _teaches(s, self._teacher_id)]

    def sections(self) -> list[Record]:
        return [library_section(s) for s in self._own_sections()]

    def _student_ids(self) -> set[str]:
        return {student for s in self._own_sections() for student in s.get("students") or []}

    def students(self) -> list[Record]:
        users = self._snapshot.by_id["users"]
        return [library_user(users[i]) for i in sorted(self._student_ids()) if i in users]

    def user(self, user_id: str) -> Record | None:
        """The teacher's own record, or one of the teacher's students."""
        record = self._snapshot.by_id["users"].get(user_id)
        if record is None or (user_id != self._teacher_id and user_id not in self._student_ids()):
            return None
        return library_user(record)


class _ListSource:
    """Records already chosen (a teacher's view), paged as Clever pages lists."""

    def __init__(self, records: list[Record]):
        self._collection = _Collection(records)

    def list_page(self, version: str, endpoint: str, starting_after: str | None, ending_before: str | None,
                  limit: int, role: str | None) -> Page:
        return self._collection.page(starting_after, ending_before, limit)

    def get(self, version: str, endpoint: str, record_id: str) -> Record | None:
        return None


@dataclass(frozen=True)
class DistrictSpec:
    """A district the simulator serves: its slug, bearer token and records.

    Give ``data_dir`` (a directory of JSON files) or ``source`` (any DataSource).
    """

    slug: str
    token: str = field(repr=False)
    data_dir: Path | str | None = None
    source: DataSource | None = field(default=None, repr=False)
    events: bool = True  # whether GET /{version}/events answers (Clever: 404 when not enabled)
    events_retention_seconds: float = CLEVER_RETENTION_SECONDS
    # Clever Library: teachers' bearer tokens -> their Clever user ids (see the module doc)
    teachers: Mapping[str, str] = field(default_factory=dict, repr=False)
    integration: str = DEFAULT_INTEGRATION  # the token's scope: other endpoints answer 403, as Clever's

    def __post_init__(self) -> None:
        if (self.data_dir is None) == (self.source is None):
            raise ValueError(f"district {self.slug!r}: give exactly one of data_dir or source")
        integration(self.integration)  # raises naming the known ones
        if not self.slug or not self.token:
            raise ValueError("a district needs a slug and a non-empty token")

    def open_source(self) -> DataSource:
        if self.source is not None:
            return self.source
        assert self.data_dir is not None  # checked in __post_init__
        if is_sorted_store(self.data_dir):  # a large district: served from disk, page by page
            return SortedFileDataSource(self.data_dir)
        return FileDataSource(self.data_dir)


# -- faults ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Faults:
    """What to break; see the module docstring. The default breaks nothing."""

    rate_limit_probability: float = 0.0
    retry_after: float = 1.0
    server_error_probability: float = 0.0
    server_error_status: int = 503
    slow_seconds: float = 0.0
    slow_probability: float = 1.0
    fail_endpoint: str | None = None
    fail_after_pages: int = 0
    malformed_json_endpoint: str | None = None
    malformed_after_pages: int = 0
    truncated_page_endpoint: str | None = None
    truncated_after_pages: int = 0
    drop_connection_probability: float = 0.0
    max_faults: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_probability"):
                _require(isinstance(value, int | float) and 0 <= value <= 1, f.name, "a number in 0..1")
            elif f.name.endswith("_endpoint"):
                _require(value is None or value in (*ENDPOINTS, "events"), f.name,
                         f"one of {[*ENDPOINTS, 'events']}")
            elif f.name.endswith("_pages") or (f.name == "max_faults" and value is not None):
                _require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, f.name,
                         "an integer >= 0")
            elif f.name in ("retry_after", "slow_seconds"):
                _require(isinstance(value, int | float) and value >= 0, f.name, "a number >= 0")
        _require(self.server_error_status in SERVER_ERROR_STATUSES, "server_error_status",
                 f"one of {list(SERVER_ERROR_STATUSES)}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Faults:
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown fault setting(s) {unknown}; known: {[f.name for f in fields(cls)]}")
        return cls(**values)


def _require(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise ValueError(f"fault setting {name} must be {what}")


@dataclass
class _Decision:
    """The faults one request gets."""

    sleep: float = 0.0
    drop: bool = False
    status: int | None = None
    truncate: bool = False
    malformed: bool = False

    def __bool__(self) -> bool:
        return bool(self.sleep or self.drop or self.status or self.truncate or self.malformed)


class _FaultInjector:
    def __init__(self, faults: Faults, seed: int):
        self._seed = seed
        self._lock = threading.Lock()
        self.total_injected = 0  # for stats; cleared only by reset
        self.configure(faults)

    def configure(self, faults: Faults) -> None:
        """New settings start afresh: same random sequence, page counts and fault budget."""
        with self._lock:
            self.faults = faults
            self._rng = random.Random(self._seed)
            self._requests: Counter[tuple[str, str]] = Counter()
            self._injected = 0

    def reset(self) -> None:
        self.configure(Faults())
        self.total_injected = 0

    def decide(self, district: str, endpoint: str) -> _Decision:
        with self._lock:
            f = self.faults
            self._requests[(district, endpoint)] += 1
            seen = self._requests[(district, endpoint)]
            decision = _Decision()
            if f.max_faults is not None and self._injected >= f.max_faults:
                return decision
            if f.slow_seconds and self._chance(f.slow_probability):
                decision.sleep = f.slow_seconds
            if self._chance(f.drop_connection_probability):
                decision.drop = True
            elif self._chance(f.rate_limit_probability):
                decision.status = 429
            elif self._chance(f.server_error_probability):
                decision.status = f.server_error_status
            elif endpoint == f.fail_endpoint and seen > f.fail_after_pages:
                decision.status = 500
            elif endpoint == f.truncated_page_endpoint and seen > f.truncated_after_pages:
                decision.truncate = True
            elif endpoint == f.malformed_json_endpoint and seen > f.malformed_after_pages:
                decision.malformed = True
            if decision:
                self._injected += 1
                self.total_injected += 1
            return decision

    def _chance(self, probability: float) -> bool:
        return probability > 0 and self._rng.random() < probability


# -- rate limiting and stats --------------------------------------------------------------------
class _RateLimiter:
    """Fixed 60-second window per district token, opened by the window's first request."""

    def __init__(self, per_minute: int | None):
        self.per_minute = per_minute
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> tuple[bool, dict[str, str]]:
        """Whether to serve the request, and the X-RateLimit-* headers to send."""
        if self.per_minute is None:
            return True, {}
        now = time.time()
        with self._lock:
            start, used = self._windows.get(key, (now, 0))
            if now >= start + RATE_LIMIT_WINDOW_SECONDS:
                start, used = now, 0
            admitted = used < self.per_minute
            if admitted:
                used += 1
            self._windows[key] = (start, used)
        reset = start + RATE_LIMIT_WINDOW_SECONDS
        headers = {"X-RateLimit-Limit": str(self.per_minute),
                   "X-RateLimit-Remaining": str(self.per_minute - used),
                   "X-RateLimit-Reset": str(math.ceil(reset))}
        if not admitted:
            headers["Retry-After"] = str(max(1, math.ceil(reset - now)))
        return admitted, headers

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


class _Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def record(self, path: str, outcome: str) -> None:
        with self._lock:
            self._by_path.setdefault(path, Counter())[outcome] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_status: Counter[str] = Counter()
            for outcomes in self._by_path.values():
                by_status.update(outcomes)
            return {"requests": sum(by_status.values()), "by_status": dict(by_status),
                    "by_path": {path: dict(c) for path, c in self._by_path.items()}}

    def clear(self) -> None:
        with self._lock:
            self._by_path: dict[str, Counter[str]] = {}


# -- request handling ---------------------------------------------------------------------------
@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    transport: str = "normal"  # or "drop" (no answer) or "truncate" (body cut short)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _encode(value: Any) -> bytes:
    if not isinstance(value, dict | list | str) and hasattr(value, "json"):
        return value.json  # already serialised
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates in test data: still valid JSON, escaped
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def _record_id(record: Any) -> str:
    return record["id"] if isinstance(record, dict) else record.id


def _json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> _Response:
    return _body_response(status, _encode(payload), headers)


def _body_response(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> _Response:
    return _Response(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> _Response:
    return _json_response(status, {"message": message}, headers)


def _seconds(value: float) -> str:
    """Retry-After value: whole seconds as an integer, else a plain decimal (for fast tests)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _uri(path: str, query: Sequence[tuple[str, str]]) -> str:
    return f"{path}?{urlencode(query)}" if query else path


def _parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    try:
        limit = int(raw)
    except ValueError:
        raise _HTTPError(400, "limit must be an integer") from None
    if limit < 1:
        raise _HTTPError(400, "limit must be at least 1")
    if limit > MAX_PAGE_SIZE:
        raise _HTTPError(413, f"limit must be at most {MAX_PAGE_SIZE}")
    return limit


class CleverSimulator:
    """A running (after ``start()``) Clever Data API for the given districts.

    ``districts``: ``{slug: (token, data_dir)}`` or a list of ``DistrictSpec``.
    ``rate_limit_per_minute=None`` turns rate limiting off.
    """

    def __init__(self, districts: Mapping[str, tuple[str, Path | str]] | Sequence[DistrictSpec],
                 host: str = "127.0.0.1", port: int = 0, faults: Faults | Mapping[str, Any] | None = None,
                 rate_limit_per_minute: int | None = 1200, seed: int = 0,
                 app_credentials: tuple[str, str] | None = None):
        specs = ([DistrictSpec(slug, token, data_dir) for slug, (token, data_dir) in districts.items()]
                 if isinstance(districts, Mapping) else list(districts))
        if not specs:
            raise ValueError("serve at least one district")
        if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
            raise ValueError("rate_limit_per_minute must be >= 1, or None for no limit")
        self._districts = {spec.slug: spec for spec in specs}
        self._by_token = {spec.token: spec for spec in specs}
        if len(self._districts) != len(specs) or len(self._by_token) != len(specs):
            raise ValueError("district slugs and tokens must be unique")
        self._sources = {spec.slug: spec.open_source() for spec in specs}
        self._event_logs = {(spec.slug, version): EventLog(spec.events_retention_seconds, spec.events)
                            for spec in specs for version in API_VERSIONS}
        for spec in specs:
            source = self._sources[spec.slug]
            if isinstance(source, FileDataSource):  # changes between its files' states become events
                source.on_reload = self._announcer(spec.slug)
                source.load()
        self._revoked: set[str] = set()
        self._app_credentials = app_credentials  # (client id, secret) of GET /oauth/tokens; None: not served
        self._unlisted: set[str] = set()  # districts that disconnected the application
        self._teacher_tokens = {token: (spec, teacher) for spec in specs for token, teacher in spec.teachers.items()}
        if len(self._teacher_tokens) != sum(len(spec.teachers) for spec in specs) or \
                self._teacher_tokens.keys() & self._by_token.keys():
            raise ValueError("teacher tokens must be unique, and differ from district tokens")
        self._revoked_teachers: set[str] = set()
        self._faults = _FaultInjector(self._as_faults(faults), seed)
        self._limiter = _RateLimiter(rate_limit_per_minute)
        self._stats = _Stats()
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> CleverSimulator:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._server = _Server((self._host, self._port), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="clever-simulator", daemon=True)  # short poll: quick stop()
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> CleverSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """Scheme, host and port, no API version: ``http://127.0.0.1:PORT``."""
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"http://{host}:{self.port}"

    @property
    def slugs(self) -> list[str]:
        return list(self._districts)

    # -- control ------------------------------------------------------------------------------
    def set_faults(self, **settings: Any) -> None:
        """Replace the fault settings (no arguments: no faults) and restart page counts."""
        self._faults.configure(Faults.from_mapping(settings))

    def revoke(self, slug: str) -> None:
        """From now on the district's token gets 401 (until ``reset()``)."""
        if slug not in self._districts:
            raise KeyError(f"no district {slug!r}")
        self._revoked.add(slug)

    def disconnect(self, slug: str) -> None:
        """The district disconnects the application: its token leaves ``GET /oauth/tokens``
        and answers 401, as a revoked token does, until ``reconnect``."""
        self.revoke(slug)
        self._unlisted.add(slug)

    def reconnect(self, slug: str, token: str | None = None) -> None:
        """The district connects the application again (with a new token, if given)."""
        spec = self._districts[slug]
        if token is not None and token != spec.token:
            if token in self._by_token:
                raise ValueError("tokens must be unique")
            del self._by_token[spec.token]
            spec = self._districts[slug] = replace(spec, token=token)
            self._by_token[token] = spec
        self._revoked.discard(slug)
        self._unlisted.discard(slug)

    def district_id(self, slug: str) -> str:
        """The district's Clever id: its district record's."""
        page = self._sources[slug].list_page("v3.0", "districts", None, None, 1, None)
        if not page.records:
            raise KeyError(f"district {slug!r} serves no district record")
        return str(page.records[0]["id"])

    def revoke_teacher(self, teacher_id: str) -> None:
        """From now on the teacher's Library token gets 401 (until ``reset()``)."""
        if teacher_id not in {teacher for _, teacher in self._teacher_tokens.values()}:
            raise KeyError(f"no Library teacher {teacher_id!r}")
        self._revoked_teachers.add(teacher_id)

    def reset(self) -> None:
        """Clear faults, revocations, stats and rate-limit windows."""
        self._faults.reset()
        self._revoked.clear()
        self._unlisted.clear()
        self._revoked_teachers.clear()
        self._stats.clear()
        self._limiter.clear()

    def stats(self) -> dict[str, Any]:
        """``requests``, ``by_status`` and ``by_path`` (data routes only; outcomes are HTTP
        statuses or "dropped"/"truncated") and ``faults_injected``, all since ``reset()``."""
        return {**self._stats.snapshot(), "faults_injected": self._faults.total_injected}

    def add_events(self, slug: str, version: str, changes: Sequence[Change]) -> list[Record]:
        """Announce ``changes`` (e.g. of a district served from a sorted store, whose states
        are never compared) as events of ``slug``'s ``version``."""
        return self._event_log(slug, version).append(changes)

    def set_events(self, slug: str, *, enabled: bool | None = None, retention_seconds: float | None = None) -> None:
        """Turn a district's events on or off (off: 404, as Clever), or change how long they are kept."""
        for version in API_VERSIONS:
            log_ = self._event_log(slug, version)
            if enabled is not None:
                log_.enabled = enabled
            if retention_seconds is not None:
                log_.retention_seconds = retention_seconds

    def _event_log(self, slug: str, version: str) -> EventLog:
        if (slug, version) not in self._event_logs:
            raise KeyError(f"no district {slug!r} with API version {version!r}")
        return self._event_logs[(slug, version)]

    def _announcer(self, slug: str) -> Callable[[str, RecordsById, RecordsById], None]:
        def announce(version: str, before: RecordsById, after: RecordsById) -> None:
            self._event_logs[(slug, version)].append(diff_events(before, after))
        return announce

    @staticmethod
    def _as_faults(faults: Faults | Mapping[str, Any] | None) -> Faults:
        if isinstance(faults, Faults):
            return faults
        return Faults.from_mapping(faults or {})

    # -- requests -------------------------------------------------------------------------------
    def _handle(self, method: str, target: str, authorization: str | None, body: bytes) -> _Response:
        """Answer one HTTP request; transport-level faults are marked on the response."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        if path == "/_sim" or path.startswith("/_sim/"):
            return self._control(method, path, body)
        if path == "/oauth/tokens" and self._app_credentials is not None:
            return self._tokens(method, parts.query, authorization)
        response = self._data(method, path, parts.query, authorization)
        outcome = {"drop": "dropped", "truncate": "truncated"}.get(response.transport, str(response.status))
        self._stats.record(path, outcome)
        return response

    def _data(self, method: str, path: str, query_string: str, authorization: str | None) -> _Response:
        teacher = self._authenticate_teacher(authorization)
        spec = teacher[0] if teacher else self._authenticate(authorization)
        if spec is None:
            return _error(401, "missing, unknown or revoked bearer token")
        segments = path.strip("/").split("/")
        if teacher is not None:
            return self._teacher_data(method, spec, teacher[1], segments, query_string)
        if len(segments) not in (2, 3) or segments[0] not in API_VERSIONS or segments[1] not in (*ENDPOINTS, "events"):
            return _error(404, "no such API route")
        refused, limit_headers = self._admit(method, spec)
        if refused is not None:
            return refused
        version, endpoint = segments[0], segments[1]
        if not integration(spec.integration).reads(endpoint):
            return _error(403, OUT_OF_SCOPE_MESSAGE, limit_headers)
        decision = self._faults.decide(spec.slug, endpoint)
        if decision.sleep:
            time.sleep(decision.sleep)
        if decision.drop:
            return _Response(0, transport="drop")
        if decision.status == 429:
            retry_after = self._faults.faults.retry_after
            return _error(429, "rate limit exceeded", {
                **limit_headers, "Retry-After": _seconds(retry_after),
                "X-RateLimit-Reset": str(math.ceil(time.time() + retry_after))})
        if decision.status:
            return _error(decision.status, "simulated server error")
        source = self._sources[spec.slug]
        try:
            if endpoint == "events":
                if isinstance(source, FileDataSource):  # files changed since the last read: their events first
                    source.load([version])
                response = self._events(self._event_logs[(spec.slug, version)], version, segments[2:],
                                        parse_qsl(query_string, keep_blank_values=True))
            elif len(segments) == 3:
                response = self._one(source, version, endpoint, segments[2])
            else:
                response = self._list(source, version, endpoint, parse_qsl(query_string, keep_blank_values=True))
        except _HTTPError as exc:
            return _error(exc.status, exc.message, limit_headers)
        response.headers.update(limit_headers)
        if decision.malformed:
            response.body = response.body[: max(1, len(response.body) // 2)]
        if decision.truncate:
            response.transport = "truncate"
        return response

    def _admit(self, method: str, spec: DistrictSpec) -> tuple[_Response | None, dict[str, str]]:
        """(a refusal or None, the X-RateLimit-* headers): GET only, within the token's rate limit."""
        if method != "GET":
            return _error(405, "only GET is supported"), {}
        admitted, limit_headers = self._limiter.admit(spec.slug)
        return (None if admitted else _error(429, "rate limit exceeded", limit_headers)), limit_headers

    def _authenticate_teacher(self, authorization: str | None) -> tuple[DistrictSpec, str | None] | None:
        """(district, teacher id) for a Library teacher's token; a revoked one: (district, None)."""
        scheme, _, token = (authorization or "").partition(" ")
        found = self._teacher_tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            return None
        return found[0], None if found[1] in self._revoked_teachers else found[1]

    def _teacher_data(self, method: str, spec: DistrictSpec, teacher_id: str | None, segments: list[str],
                      query_string: str) -> _Response:
        """A Library teacher's request: only the teacher's own view, cut down (module doc)."""
        if teacher_id is None:
            return _error(401, "missing, unknown or revoked bearer token")
        if not segments or segments[0] not in API_VERSIONS:
            return _error(404, "no such API route")
        refused, limit_headers = self._admit(method, spec)
        if refused is not None:
            return refused
        version, route = segments[0], segments[1:]
        decision = self._faults.decide(spec.slug, route[0] if route else "me")
        if decision.status:
            return _error(decision.status, "simulated server error")
        source = self._sources[spec.slug]
        if not isinstance(source, FileDataSource):
            return _error(501, "the simulator serves Library teachers of districts held in JSON files only")
        view = LibraryView(source.snapshot(version), teacher_id)
        if view.teacher is None:
            return _error(404, "no such user")
        try:
            if route == ["me"]:
                response = _json_response(200, {
                    "type": "teacher", "data": {"id": teacher_id, "district": view.teacher.get("district"),
                                                "type": "teacher"},
                    "links": [{"rel": "self", "uri": "/me"}, {"rel": "canonical",
                                                               "uri": f"/{version}/users/{teacher_id}"}]})
            elif route == ["districts", str(view.teacher.get("district"))]:
                response = self._one(source, version, "districts", route[1])
            elif len(route) == 2 and route[0] == "users":
                record = view.user(route[1])
                if record is None:
                    raise _HTTPError(404, "no users record with that id is shared with this application")
                response = _json_response(200, {"data": record,
                                                "links": [{"rel": "self", "uri": f"/{version}/users/{route[1]}"}]})
            elif len(route) == 3 and route[0] == "users" and route[2] in ("sections", "mystudents"):
                if route[1] != teacher_id:
                    raise _HTTPError(403, "Resource not in token's scopes")
                records = view.sections() if route[2] == "sections" else view.students()
                response = self._list(_ListSource(records), version, "/".join(route),
                                      parse_qsl(query_string, keep_blank_values=True))
            else:
                raise _HTTPError(403, "Resource not in token's scopes")
        except _HTTPError as exc:
            return _error(exc.status, exc.message, limit_headers)
        response.headers.update(limit_headers)
        return response

    def _authenticate(self, authorization: str | None) -> DistrictSpec | None:
        scheme, _, token = (authorization or "").partition(" ")
        spec = self._by_token.get(token.strip()) if scheme.lower() == "bearer" else None
        return None if spec is None or spec.slug in self._revoked else spec

    @staticmethod
    def _one(source: DataSource, version: str, endpoint: str, record_id: str) -> _Response:
        record = source.get(version, endpoint, record_id)
        if record is None:
            raise _HTTPError(404, f"no {endpoint} record with that id is shared with this application")
        uri = f"/{version}/{endpoint}/{record_id}"
        return _body_response(200, b'{"data":' + _encode(record) + b',"links":'
                              + _encode([{"rel": "self", "uri": uri}]) + b"}")

    @staticmethod
    def _list(source: DataSource, version: str, endpoint: str, query: list[tuple[str, str]]) -> _Response:
        params: dict[str, str] = {}
        for key, value in query:
            params.setdefault(key, value)
        limit = _parse_limit(params.get("limit"))
        starting_after = params.get("starting_after") or None
        ending_before = params.get("ending_before") or None
        if starting_after and ending_before:
            raise _HTTPError(400, "give starting_after or ending_before, not both")
        role = (params.get("role") or None) if endpoint == "users" else None
        if role is not None and role not in ROLES:
            raise _HTTPError(400, f"role must be one of {list(ROLES)}")
        page = source.list_page(version, endpoint, starting_after, ending_before, limit, role)

        path = f"/{version}/{endpoint}"
        kept = [(k, v) for k, v in query if k not in ("starting_after", "ending_before")]
        links = [{"rel": "self", "uri": _uri(path, query)}]
        if page.records and page.more_before:
            links.append({"rel": "prev", "uri": _uri(path, [*kept, ("ending_before", _record_id(page.records[0]))])})
        if page.records and page.more_after:
            links.append({"rel": "next", "uri": _uri(path, [*kept, ("starting_after", _record_id(page.records[-1]))])})
        # Assembled as bytes so stored records are sent as stored, never parsed and re-encoded.
        items = [b'{"data":' + _encode(record) + b',"uri":' + _encode(f"{path}/{_record_id(record)}") + b"}"
                 for record in page.records]
        return _body_response(200, b'{"data":[' + b",".join(items) + b'],"links":' + _encode(links) + b"}")

    @staticmethod
    def _events(log_: EventLog, version: str, event_id: list[str], query: list[tuple[str, str]]) -> _Response:
        """``GET /{version}/events`` (paged like records; ``record_type`` repeatable) and
        ``/{version}/events/{id}``; 404 when events are off or the cursor is not held."""
        try:
            if event_id:
                event = log_.get(event_id[0])
                if event is None:
                    raise _HTTPError(404, "no event with that id")
                return _json_response(200, {"data": event, "links": [
                    {"rel": "self", "uri": f"/{version}/events/{event_id[0]}"}]})
            params: dict[str, str] = {}
            for key, value in query:
                params.setdefault(key, value)
            if params.get("school"):
                raise _HTTPError(400, "the simulator does not filter events by school")
            starting_after = params.get("starting_after") or None
            ending_before = params.get("ending_before") or None
            if starting_after and ending_before:
                raise _HTTPError(400, "give starting_after or ending_before, not both")
            page = log_.page(starting_after, ending_before, _parse_limit(params.get("limit")),
                             [value for key, value in query if key == "record_type" and value])
        except EventsUnavailable as exc:
            raise _HTTPError(404, str(exc)) from None
        path = f"/{version}/events"
        kept = [(k, v) for k, v in query if k not in ("starting_after", "ending_before")]
        links = [{"rel": "self", "uri": _uri(path, query)}]
        if page.records and page.more_before:
            links.append({"rel": "prev", "uri": _uri(path, [*kept, ("ending_before", page.records[0]["id"])])})
        if page.records and page.more_after:
            links.append({"rel": "next", "uri": _uri(path, [*kept, ("starting_after", page.records[-1]["id"])])})
        return _json_response(200, {"data": [{"data": event, "uri": f"{path}/{event['id']}"} for event in page.records],
                                    "links": links})

    def _tokens(self, method: str, query_string: str, authorization: str | None) -> _Response:
        """``GET /oauth/tokens?owner_type=district``, as Clever: the application's district
        tokens (basic auth with its client id and secret)."""
        scheme, _, encoded = (authorization or "").partition(" ")
        try:
            given = tuple(base64.b64decode(encoded.strip(), validate=True).decode().split(":", 1))
        except ValueError:
            given = ()
        if scheme.lower() != "basic" or given != self._app_credentials:
            return _error(401, "invalid client credentials")
        if method != "GET":
            return _error(405, "only GET is supported here")
        if dict(parse_qsl(query_string)).get("owner_type") != "district":
            return _error(400, "owner_type must be 'district'")
        data = [{"id": hashlib.sha1(spec.token.encode()).hexdigest()[:24], "created": "2026-01-01T00:00:00.000Z",
                 "owner": {"type": "district", "id": self.district_id(slug)}, "access_token": spec.token,
                 "scopes": ["read:district_admins", "read:school_admins", "read:sis", "read:students",
                            "read:teachers", "read:user_id"]}
                for slug, spec in sorted(self._districts.items()) if slug not in self._unlisted]
        return _json_response(200, {"data": data, "links": [{"rel": "self",
                                                             "uri": "/oauth/tokens?owner_type=district"}]})

    def _control(self, method: str, path: str, body: bytes) -> _Response:
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            return _error(400, "body must be JSON")
        if not isinstance(payload, dict):
            return _error(400, "body must be a JSON object")
        route = (method, path)
        try:
            if route == ("POST", "/_sim/faults"):
                self.set_faults(**payload)
            elif route == ("POST", "/_sim/revoke"):
                if "teacher" in payload:
                    self.revoke_teacher(str(payload["teacher"]))
                else:
                    self.revoke(str(payload.get("token_district")))
            elif route == ("POST", "/_sim/disconnect"):
                self.disconnect(str(payload.get("district")))
            elif route == ("POST", "/_sim/reconnect"):
                self.reconnect(str(payload.get("district")), payload.get("token"))
            elif route == ("POST", "/_sim/events"):
                try:
                    changes = [Change(c["endpoint"], c["action"], c["record"], c.get("previous"))
                               for c in payload.get("changes") or []]
                except (KeyError, TypeError) as exc:
                    raise ValueError(f"each change needs endpoint, action and record: {exc}") from None
                return _json_response(200, {"events": self.add_events(str(payload.get("district")),
                                                                      str(payload.get("version", "v3.0")), changes)})
            elif route == ("POST", "/_sim/events/settings"):
                self.set_events(str(payload.get("district")), enabled=payload.get("enabled"),
                                retention_seconds=payload.get("retention_seconds"))
            elif route == ("POST", "/_sim/reset"):
                self.reset()
            elif route == ("GET", "/_sim/stats"):
                return _json_response(200, self.stats())
            elif route == ("GET", "/_sim/health"):
                return _json_response(200, {"status": "ok", "districts": self.slugs})
            elif route != ("GET", "/_sim/faults"):
                return _error(404, "no such control route")
        except ValueError as exc:
            return _error(400, str(exc))
        except KeyError as exc:
            return _error(404, str(exc.args[0]))
        return _json_response(200, {"faults": asdict(self._faults.faults), "revoked": sorted(self._revoked),
                                    "revoked_teachers": sorted(self._revoked_teachers)})


# -- HTTP plumbing ---------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 simulator: CleverSimulator):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self.simulator = simulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients page through thousands of requests
    server_version = "CleverSimulator/1.0"
    timeout = 120  # idle keep-alive connections are closed after this
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            response = self.server.simulator._handle(self.command, self.path, self.headers.get("Authorization"),
                                                     body)
        except Exception:
            log.exception("simulator failed on %s %s", self.command, urlsplit(self.path).path)
            response = _error(500, "internal simulator error")
        try:
            self._send(response)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout expired)

    def _send(self, response: _Response) -> None:
        if response.transport == "drop":
            self._abort()
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name != "Content-Length":
                self.send_header(name, value)
        full_length = len(response.body)
        self.send_header("Content-Length", str(full_length))
        self.end_headers()
        if response.transport == "truncate":
            self.wfile.write(response.body[: full_length // 2])
            self._abort()
        else:
            self.wfile.write(response.body)

    def _abort(self) -> None:
        """Close the connection now, whatever the client still expects."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Request lines only (never headers, so never tokens), at DEBUG."""
        log.debug("%s - " + format, self.address_string(), *args)


# -- CLI ------------------------------------------------------------------------------------------------
def _parse_district(text: str) -> DistrictSpec:
    slug, sep, rest = text.partition("=")
    token, sep2, data_dir = rest.partition("@")
    if not (sep and sep2 and slug and token and data_dir):
        raise ValueError(f"--district must look like slug=token@data_dir, got {text.split('=')[0]!r}=...")
    if token.startswith("env:"):
        token = os.environ.get(token[4:], "")
        if not token:
            raise ValueError(f"--district {slug}: environment variable {rest.split('@')[0][4:]} is empty")
    return DistrictSpec(slug, token, Path(data_dir))


def _with_integrations(districts: list[DistrictSpec], settings: list[str]) -> list[DistrictSpec]:
    """The districts with ``--integration SLUG=INTEGRATION`` applied."""
    chosen: dict[str, str] = {}
    for text in settings:
        slug, sep, name = text.partition("=")
        if not sep or slug not in {d.slug for d in districts}:
            raise ValueError(f"--integration must look like SLUG=INTEGRATION for a served district, got {text!r}")
        chosen[slug] = name
    return [replace(d, integration=chosen[d.slug]) if d.slug in chosen else d for d in districts]


def _parse_fault(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep:
        raise ValueError(f"--fault must look like key=value, got {text!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw  # a bare string such as an endpoint name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clever-sim", description="Serve a simulated Clever Data API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--district", action="append", default=[], metavar="SLUG=TOKEN@DIR",
                        help="serve DIR as SLUG for TOKEN (repeatable; TOKEN may be env:VARNAME); "
                             "default: the sample district as 'demo'")
    parser.add_argument("--integration", action="append", default=[], metavar="SLUG=INTEGRATION",
                        help=f"serve SLUG with that integration's token scope ({', '.join(INTEGRATION_NAMES)}; "
                             "default secure_sync): e.g. sso answers 403 outside districts and users")
    parser.add_argument("--fault", action="append", default=[], metavar="KEY=VALUE",
                        help="fault setting, e.g. server_error_probability=0.1 (repeatable)")
    parser.add_argument("--rate-limit-per-minute", type=int, default=1200, help="0 turns rate limiting off")
    parser.add_argument("--seed", type=int, default=0, help="seed for probabilistic faults")
    parser.add_argument("--app", metavar="CLIENT_ID:SECRET",
                        help="serve GET /oauth/tokens for this application client (SECRET may be env:VARNAME)")
    parser.add_argument("--log-level", default="WARNING")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        districts = [_parse_district(d) for d in args.district] or [
            DistrictSpec("demo", os.environ.get("CLEVER_SIM_TOKEN") or DEFAULT_TOKEN, SAMPLE_DISTRICT_DIR)]
        districts = _with_integrations(districts, args.integration)
        faults = Faults.from_mapping(dict(_parse_fault(f) for f in args.fault))
        app = None
        if args.app:
            client_id, _, secret = args.app.partition(":")
            if secret.startswith("env:"):
                secret = os.environ.get(secret[4:], "")
            if not client_id or not secret:
                raise ValueError("--app wants CLIENT_ID:SECRET")
            app = (client_id, secret)
        simulator = CleverSimulator(districts, host=args.host, port=args.port, faults=faults,
                                    rate_limit_per_minute=args.rate_limit_per_minute or None, seed=args.seed,
                                    app_credentials=app)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    with simulator:
        print(READY_MESSAGE.format(url=simulator.base_url, slugs=", ".join(simulator.slugs)), flush=True)
        stopping.wait()
    return 0


if __name__ == "__main__":
    from clever_devkit.cli import run_main

    raise SystemExit(run_main(main))
