"""Clever's Events API for the simulator: a district's created, updated and deleted records
as events, in order, for ``GET /{version}/events`` and ``/{version}/events/{id}``.

Events come from the changes the simulator sees between two states of a district's files
(:func:`diff_events`, called when a version's files are re-read) or are given as a list
(``POST /_sim/events``, for districts served from a sorted store, which are never
compared). Each event is shaped as the events spec (``v3.x-events.yml``) says:
``{"id", "type": "<endpoint>.<created|updated|deleted>", "created", "data": {"object":
record}}`` and, for an update, ``previous_attributes`` (the changed top-level fields'
earlier values). Ids are 24 hex digits that sort in the order the events happened, so
paging works as for records: ``limit``, ``starting_after``, ``ending_before``
(``ending_before=last``: the latest events), ``record_type`` (repeatable).

Events are kept for ``retention_seconds`` (Clever: 30 days). What the spec lets the API
answer besides 200 is 404, and that is what the log answers when the district's events
are not enabled, or when ``starting_after`` names an event it does not hold (never issued,
or older than the retention): the caller must fall back to a full sync.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clever.catalog import ENDPOINTS
from clever_devkit.district_store import Page

Record = dict[str, Any]
CLEVER_RETENTION_SECONDS = 30 * 86400
ACTIONS = ("created", "updated", "deleted")
_sequence = itertools.count(1)  # one order for every log of the process


class EventsUnavailable(LookupError):
    """Clever answers 404: events are not enabled, or the cursor is not held (any more)."""


@dataclass(frozen=True)
class Change:
    """One change to announce: ``endpoint``, ``action`` and the record (for a deletion, its
    last version); ``previous`` is an updated record's earlier version."""

    endpoint: str
    action: str
    record: Record
    previous: Record | None = None


def diff_events(before: Mapping[str, Mapping[str, Record]], after: Mapping[str, Mapping[str, Record]]) -> list[Change]:
    """The changes from one state of a district to the next (endpoint -> id -> record), by
    endpoint in the catalog's order, then by id."""
    changes = []
    for endpoint in ENDPOINTS:
        old, new = before.get(endpoint) or {}, after.get(endpoint) or {}
        for record_id in sorted(old.keys() | new.keys()):
            if record_id not in new:
                changes.append(Change(endpoint, "deleted", old[record_id]))
            elif record_id not in old:
                changes.append(Change(endpoint, "created", new[record_id]))
            elif old[record_id] != new[record_id]:
                changes.append(Change(endpoint, "updated", new[record_id], old[record_id]))
    return changes


def previous_attributes(previous: Record, current: Record) -> Record:
    """The top-level fields that changed, with their earlier values (None: it was absent)."""
    return {key: previous.get(key) for key in sorted(previous.keys() | current.keys())
            if previous.get(key) != current.get(key)}


class EventLog:
    """The events of one district and API version, oldest first."""

    def __init__(self, retention_seconds: float = CLEVER_RETENTION_SECONDS, enabled: bool = True,
                 clock: Callable[[], float] = time.time):
        self.retention_seconds = retention_seconds
        self.enabled = enabled
        self._clock = clock
        self._events: list[Record] = []
        self._ids: list[str] = []
        self._last = 0.0
        self._lock = threading.Lock()

    def append(self, changes: Iterable[Change]) -> list[Record]:
        """Announce ``changes`` now, in the order given; returns the events."""
        changes = list(changes)
        for change in changes:  # all or nothing
            if change.action not in ACTIONS or change.endpoint not in ENDPOINTS:
                raise ValueError(f"no event type {change.endpoint}.{change.action}")
        added = []
        with self._lock:
            self._last = now = max(self._last, self._clock())  # ids stay in order if the clock steps back
            created = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            for change in changes:
                event: Record = {"id": f"{int(now):08x}{next(_sequence):016x}",
                                 "type": f"{change.endpoint}.{change.action}", "created": created,
                                 "data": {"object": change.record}, "_at": now}
                if change.action == "updated":
                    event["previous_attributes"] = previous_attributes(change.previous or {}, change.record)
                self._events.append(event)
                self._ids.append(event["id"])
                added.append(self._public(event))
        return added

    def page(self, starting_after: str | None, ending_before: str | None, limit: int,
             record_types: Iterable[str] = ()) -> Page:
        """A page of events after (or before) a cursor, as records are paged."""
        with self._lock:
            self._check_enabled()
            self._expire()
            if starting_after is not None and self._index(starting_after) is None:
                raise EventsUnavailable(f"no event {starting_after!r}: unknown, or older than the "
                                        f"{self.retention_seconds / 86400:g} days events are kept")
            types = {t.split(".")[0] for t in record_types}
            events = [e for e in self._events if not types or e["type"].split(".")[0] in types]
            ids = [e["id"] for e in events]
            if starting_after is not None:
                start = bisect.bisect_right(ids, starting_after)
                stop = min(start + limit, len(ids))
            elif ending_before == "last":  # Clever's way to ask for the latest events
                stop = len(ids)
                start = max(0, stop - limit)
            elif ending_before is not None:
                stop = bisect.bisect_left(ids, ending_before)
                start = max(0, stop - limit)
            else:
                start, stop = 0, min(limit, len(ids))
            return Page([self._public(e) for e in events[start:stop]], start > 0, stop < len(ids))

    def get(self, event_id: str) -> Record | None:
        with self._lock:
            self._check_enabled()
            self._expire()
            found = self._index(event_id)
            return None if found is None else self._public(self._events[found])

    def _index(self, event_id: str) -> int | None:
        found = bisect.bisect_left(self._ids, event_id)
        return found if found < len(self._ids) and self._ids[found] == event_id else None

    def _check_enabled(self) -> None:
        if not self.enabled:
            raise EventsUnavailable("events are not enabled for this district")

    def _expire(self) -> None:
        cutoff = self._clock() - self.retention_seconds
        gone = 0
        while gone < len(self._events) and self._events[gone]["_at"] < cutoff:
            gone += 1
        if gone:
            del self._events[:gone], self._ids[:gone]

    @staticmethod
    def _public(event: Record) -> Record:
        return {key: value for key, value in event.items() if not key.startswith("_")}
