"""A district on disk at any scale: id-sorted JSON lines with a sparse index.

``<dir>/<version>/<endpoint>.jsonl`` holds one ``<id>\\t<record JSON>`` line per record,
sorted by id (as Clever sorts); ``<endpoint>.idx.json`` gives the count and the byte
offset of every ``STRIDE``-th line. The writer streams: records come from a generator,
are sorted in bounded runs and merged (an external merge sort), so memory stays at one
run whatever the district size. The reader (:class:`SortedFileDataSource`, a simulator
data source) seeks to a page through the index and serves the stored JSON without
parsing it, so the simulator's memory and CPU per page do not grow with the district.

:func:`derive_changes` writes "the next day" of such a district: a given share of users
edited and of student enrolments moved to the next section, streaming, ids unchanged,
with the expected history changes in ``changes.json`` (the benchmark checks them) and the
same changes as Clever's events would announce them (:func:`events_file`).

    python -m clever_devkit.district_store derive --from DIR --out DIR2 [--rate 0.01] [--seed 0]
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import heapq
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from clever.catalog import API_VERSIONS, ENDPOINTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    """One page of records in id order, and whether records exist before and after it.

    A record is a dict, or anything with ``id`` and ``json`` (its serialised bytes, served
    as they are, e.g. :class:`StoredRecord`)."""

    records: Sequence[Any]
    more_before: bool
    more_after: bool


Record = dict[str, Any]
STRIDE = 256  # lines between index entries: a page lookup reads at most this many extra lines
RUN_LINES = 50_000  # lines sorted in memory at once while writing
FORMAT = "clever-sorted-jsonl/1"


def encode_record(record: Record) -> bytes:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def data_path(directory: Path, version: str, endpoint: str) -> Path:
    return directory / version / f"{endpoint}.jsonl"


def index_path(directory: Path, version: str, endpoint: str) -> Path:
    return directory / version / f"{endpoint}.idx.json"


def is_sorted_store(directory: Path | str) -> bool:
    """Does ``directory`` hold a district in this layout (any version)?"""
    return any(index_path(Path(directory), v, "districts").exists() for v in API_VERSIONS)


# -- writing ----------------------------------------------------------------------------------
def _line(record: Record) -> bytes:
    record_id = record.get("id")
    if not isinstance(record_id, str) or "\t" in record_id or "\n" in record_id:
        raise ValueError(f"record id must be a string without tabs or newlines, got {record_id!r}")
    return record_id.encode("utf-8") + b"\t" + encode_record(record) + b"\n"


def _sorted_runs(lines: Iterable[bytes], scratch: Path) -> list[Path]:
    runs: list[Path] = []
    batch: list[bytes] = []

    def flush() -> None:
        batch.sort()  # "<id>\t..." lines sort as their ids do: tab sorts before any id character
        path = scratch / f"run{len(runs):05d}"
        with path.open("wb") as out:
            out.writelines(batch)
        runs.append(path)
        batch.clear()

    for line in lines:
        batch.append(line)
        if len(batch) >= RUN_LINES:
            flush()
    if batch or not runs:
        flush()
    return runs


def write_sorted_lines(lines: Iterable[bytes], data_file: Path) -> int:
    """Write already-sorted lines and their index; both appear atomically (renamed)."""
    data_file.parent.mkdir(parents=True, exist_ok=True)
    idx_file = data_file.with_name(data_file.name.removesuffix(".jsonl") + ".idx.json")
    tmp = data_file.with_name(data_file.name + ".tmp")
    entries: list[tuple[str, int]] = []
    count = offset = 0
    previous = b""
    with tmp.open("wb") as out:
        for line in lines:
            record_id = line.split(b"\t", 1)[0]
            if count and record_id <= previous:
                raise ValueError(f"{data_file}: ids out of order or repeated at line {count + 1}")
            if count % STRIDE == 0:
                entries.append((record_id.decode("utf-8"), offset))
            out.write(line)
            offset += len(line)
            count += 1
            previous = record_id
    os.replace(tmp, data_file)
    index = {"format": FORMAT, "count": count, "bytes": offset, "stride": STRIDE, "entries": entries}
    idx_tmp = idx_file.with_name(idx_file.name + ".tmp")
    idx_tmp.write_text(json.dumps(index, separators=(",", ":")), encoding="utf-8")
    os.replace(idx_tmp, idx_file)
    return count


def write_sorted(records: Iterable[Record], data_file: Path) -> int:
    """Sort ``records`` by id in bounded memory and write them with their index."""
    data_file.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".sort-", dir=data_file.parent))
    try:
        runs = _sorted_runs((_line(r) for r in records), scratch)
        with ExitStack() as stack:
            files = [stack.enter_context(path.open("rb")) for path in runs]
            return write_sorted_lines(heapq.merge(*files), data_file)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- reading ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredRecord:
    """One record as stored: its id and its JSON (UTF-8 bytes), not parsed."""

    id: str
    json: bytes

    def parsed(self) -> Record:
        return json.loads(self.json)


class SortedFile:
    """One endpoint's sorted file: positional access through the sparse index."""

    def __init__(self, data_file: Path):
        self.data_file = data_file
        idx_file = data_file.with_name(data_file.name.removesuffix(".jsonl") + ".idx.json")
        index = json.loads(idx_file.read_text(encoding="utf-8"))
        if index.get("format") != FORMAT:
            raise ValueError(f"{idx_file} is not a {FORMAT} index")
        if data_file.stat().st_size != index["bytes"]:
            raise ValueError(f"{data_file} does not match its index (size differs); rewrite both")
        self.count: int = index["count"]
        self.stride: int = index["stride"]
        self._ids = [e[0] for e in index["entries"]]
        self._offsets = [e[1] for e in index["entries"]]

    def _lines_from(self, position: int) -> Iterator[StoredRecord]:
        """Records from ``position`` (0-based) to the end, in id order."""
        if position >= self.count:
            return
        block = position // self.stride
        with self.data_file.open("rb") as f:
            f.seek(self._offsets[block])
            for n, line in enumerate(f, start=block * self.stride):
                if n >= position:
                    record_id, _, body = line.rstrip(b"\n").partition(b"\t")
                    yield StoredRecord(record_id.decode("utf-8"), body)

    def read(self, start: int, stop: int) -> list[StoredRecord]:
        records = []
        for record in self._lines_from(start):
            if len(records) >= stop - start:
                break
            records.append(record)
        return records

    def backwards_from(self, position: int) -> Iterator[StoredRecord]:
        """Records before ``position``, nearest first, one index block at a time."""
        block = (min(position, self.count) - 1) // self.stride
        while block >= 0:
            start = block * self.stride
            chunk = self.read(start, min(start + self.stride, position))
            yield from reversed(chunk)
            block -= 1

    def position(self, record_id: str, *, after: bool) -> int:
        """Index of the first record with id > ``record_id`` (after) or >= it (not after)."""
        block = bisect.bisect_right(self._ids, record_id) - 1
        if block < 0:
            return 0
        position = block * self.stride
        for record in self._lines_from(position):
            if record.id > record_id or (not after and record.id == record_id):
                return position
            position += 1
        return position

    def get(self, record_id: str) -> StoredRecord | None:
        position = self.position(record_id, after=False)
        found = self.read(position, position + 1)
        return found[0] if found and found[0].id == record_id else None


def _has_role(record: StoredRecord, role: str) -> bool:
    roles = record.parsed().get("roles")
    return isinstance(roles, dict) and roles.get(role) is not None


class SortedFileDataSource:
    """Simulator data source over a sorted store; reopens a version when its files change.

    Holds only the sparse indexes in memory. Pages without a role filter cost one seek
    and at most ``STRIDE`` skipped lines; ``role=`` pages parse records as they scan
    (correct, not fast: the pipeline never filters by role).
    """

    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)
        self._versions: dict[str, tuple[tuple[Any, ...], dict[str, SortedFile | None]]] = {}
        self._lock = threading.Lock()

    def _signature(self, version: str) -> tuple[Any, ...]:
        signature = []
        for endpoint in ENDPOINTS:
            for path in (data_path(self.data_dir, version, endpoint), index_path(self.data_dir, version, endpoint)):
                try:
                    st = path.stat()
                except FileNotFoundError:
                    signature.append(None)
                else:
                    signature.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(signature)

    def _file(self, version: str, endpoint: str) -> SortedFile | None:
        with self._lock:
            signature = self._signature(version)
            current = self._versions.get(version)
            if current is None or current[0] != signature:
                files = {}
                for e in ENDPOINTS:
                    path = data_path(self.data_dir, version, e)
                    files[e] = SortedFile(path) if path.exists() else None
                current = (signature, files)
                self._versions[version] = current
            return current[1][endpoint]

    def list_page(self, version: str, endpoint: str, starting_after: str | None, ending_before: str | None,
                  limit: int, role: str | None) -> Any:
        stored = self._file(version, endpoint)
        if stored is None:
            return Page([], False, False)
        if role is not None:
            return self._role_page(stored, starting_after, ending_before, limit, role)
        if starting_after is not None:
            start = stored.position(starting_after, after=True)
            stop = min(start + limit, stored.count)
        elif ending_before is not None:
            stop = stored.position(ending_before, after=False)
            start = max(0, stop - limit)
        else:
            start, stop = 0, min(limit, stored.count)
        return Page(stored.read(start, stop), start > 0, stop < stored.count)

    @staticmethod
    def _role_page(stored: SortedFile, starting_after: str | None, ending_before: str | None, limit: int,
                   role: str) -> Any:
        if ending_before is not None:
            position = stored.position(ending_before, after=False)
            before = (r for r in stored.backwards_from(position) if _has_role(r, role))
            records = [r for _, r in zip(range(limit), before, strict=False)][::-1]
            more_before = next(before, None) is not None
            more_after = any(_has_role(r, role) for r in stored._lines_from(position))
            return Page(records, more_before, more_after)
        position = stored.position(starting_after, after=True) if starting_after is not None else 0
        after = (r for r in stored._lines_from(position) if _has_role(r, role))
        records = [r for _, r in zip(range(limit), after, strict=False)]
        more_after = next(after, None) is not None
        more_before = any(_has_role(r, role) for r in stored.backwards_from(position))
        return Page(records, more_before, more_after)

    def get(self, version: str, endpoint: str, record_id: str) -> Any:
        stored = self._file(version, endpoint)
        return None if stored is None else stored.get(record_id)


# -- the next day: a share of users and enrolments changed ------------------------------------------
@dataclass(frozen=True)
class ChangeCounts:
    users_changed: int = 0
    sections_changed: int = 0
    enrollments_removed: int = 0
    enrollments_added: int = 0


def _chosen(seed: int, kind: str, key: str, rate: float) -> bool:
    digest = hashlib.blake2b(f"{seed}:{kind}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 1_000_000 < round(rate * 1_000_000)


def _edit_user(record: Record) -> Record:
    """A plausible edit: a new last name (e.g. after marriage) and a new modification time."""
    name = record.get("name") if isinstance(record.get("name"), dict) else {}
    record["name"] = {**name, "last": f"{name.get('last') or 'Unknown'}-Ortiz"}
    record["last_modified"] = "2026-08-11T06:00:00.000Z"
    return record


def events_file(directory: Path | str, version: str) -> Path:
    """Beside a derived day: its changes to ``version``'s records as events would announce
    them, one JSON line each, ``{"endpoint", "action": "updated", "record", "previous"}``
    (what the simulator's ``POST /_sim/events`` takes), by endpoint then id."""
    return Path(directory) / f"events-{version}.jsonl"


def _announce(events: BinaryIO, endpoint: str, previous: Record, record: Record) -> None:
    change = {"endpoint": endpoint, "action": "updated", "record": record, "previous": previous}
    events.write(json.dumps(change, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")


def _changed_users(lines: Iterable[bytes], rate: float, seed: int, counts: dict[str, int],
                   events: BinaryIO) -> Iterator[bytes]:
    for line in lines:
        record_id, _, body = line.partition(b"\t")
        if _chosen(seed, "user", record_id.decode(), rate):
            counts["users_changed"] += 1
            record = _edit_user(json.loads(body))
            _announce(events, "users", json.loads(body), record)
            yield _line(record)
        else:
            yield line


def _changed_sections(lines: Iterable[bytes], rate: float, seed: int, counts: dict[str, int],
                      events: BinaryIO) -> Iterator[bytes]:
    """Each chosen student enrolment (a share ``rate / 2``) moves to the next section in id
    order: ``rate / 2`` removed plus ``rate / 2`` added, so ``rate`` of enrolments change."""
    moving: list[str] = []
    for line in lines:
        section_id, _, body = line.rstrip(b"\n").partition(b"\t")
        record = json.loads(body)
        students = record.get("students") if isinstance(record.get("students"), list) else []
        staying = [s for s in students if not _chosen(seed, "enrollment", f"{section_id.decode()}:{s}", rate / 2)]
        arriving = [s for s in dict.fromkeys(moving) if s not in students]
        moving = [s for s in students if s not in staying]
        if len(staying) == len(students) and not arriving:
            yield line
            continue
        counts["sections_changed"] += 1
        counts["enrollments_removed"] += len(students) - len(staying)
        counts["enrollments_added"] += len(arriving)
        changed = {**record, "students": staying + arriving}
        _announce(events, "sections", record, changed)
        yield _line(changed)


def derive_changes(source: Path | str, out: Path | str, rate: float = 0.01, seed: int = 0) -> ChangeCounts:
    """Write ``out`` = ``source`` with ``rate`` of users edited and of enrolments moved, and
    per version the changes as events (:func:`events_file`), both streamed."""
    source, out = Path(source), Path(out)
    if not is_sorted_store(source):
        raise ValueError(f"{source} is not a sorted district store")
    counts = {"users_changed": 0, "sections_changed": 0, "enrollments_removed": 0, "enrollments_added": 0}
    for version in API_VERSIONS:
        if not (source / version).is_dir():
            continue
        (out / version).mkdir(parents=True, exist_ok=True)
        with events_file(out, version).open("wb") as events:
            for endpoint in ENDPOINTS:
                src = data_path(source, version, endpoint)
                if not src.exists():
                    continue
                dst = data_path(out, version, endpoint)
                if endpoint not in ("users", "sections"):
                    shutil.copyfile(src, dst)
                    shutil.copyfile(index_path(source, version, endpoint), index_path(out, version, endpoint))
                    continue
                change = _changed_users if endpoint == "users" else _changed_sections
                with src.open("rb") as lines:
                    write_sorted_lines(change(lines, rate, seed, counts, events), dst)
    result = ChangeCounts(**counts)
    (out / "changes.json").write_text(json.dumps({"rate": rate, "seed": seed, **counts}, indent=1) + "\n")
    return result


def iter_stored(directory: Path | str, version: str, endpoint: str) -> Iterator[Record]:
    """Every record of a stored endpoint in id order, parsed (for checks and tests)."""
    path = data_path(Path(directory), version, endpoint)
    if not path.exists():
        return
    with path.open("rb") as f:
        for line in f:
            yield json.loads(line.split(b"\t", 1)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clever-district-store", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    derive = sub.add_parser("derive", help="write the next day: a share of users and enrolments changed")
    derive.add_argument("--from", dest="source", type=Path, required=True)
    derive.add_argument("--out", type=Path, required=True)
    derive.add_argument("--rate", type=float, default=0.01)
    derive.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = derive_changes(args.source, args.out, args.rate, args.seed)
    print(f"Wrote {args.out}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
