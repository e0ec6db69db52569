"""Mass-archive guard: a bad day at Clever must never archive a school's students.

Before a run is approved for the snapshots, count per data type how many records that
are active now would be archived because this run does not contain them, and how many
would get a new version because their record changed. Above the district's thresholds
(shares of the type's active records, Clever's own "Requires Review" limits by default:
10% archived, 75% changed; with an absolute floor so tiny districts still work) the run
stops, archives and changes nothing, and says which hold tripped and by how much, unless
it was triggered with ``allow_mass_archive``. A run that holds records
without a readable Clever id (quarantined by validation) stops the same way if it would
archive anything of their type: any of those records could be one that looks gone.
Every check is kept in clever_landing.guard_checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from clever.catalog import DATA_TYPE, GUARDED, SNAPSHOT_SCHEMA, DataType

# Written as anti-joins (NOT EXISTS in WHERE), which PostgreSQL runs as one hash join;
# inside an aggregate's FILTER it would probe the landing table once per active record.
_ENTITY_WOULD_ARCHIVE = """
WITH active AS (
    SELECT clever_id, record_hash FROM {snapshot}
    WHERE district_slug = %(district)s AND dbt_valid_to IS NULL AND dbt_is_deleted = 'False'
)
SELECT (SELECT count(*) FROM active),
       (SELECT count(*) FROM active AS s WHERE NOT EXISTS (
           SELECT 1 FROM {landing} AS l WHERE l.sync_run_id = %(run)s AND l.clever_id = s.clever_id)),
       {unidentified},
       -- changed: a new version unless quarantined (a quarantined record keeps its version)
       (SELECT count(*) FROM active AS s JOIN {landing} AS l ON l.sync_run_id = %(run)s AND l.clever_id = s.clever_id
        WHERE md5(l.raw::text) IS DISTINCT FROM s.record_hash
          AND NOT EXISTS (SELECT 1 FROM clever_landing.quarantine AS q
                          WHERE q.sync_run_id = %(run)s AND q.endpoint = %(endpoint)s AND q.clever_id = s.clever_id))
"""
# Records of the run whose id could not be read: the guard cannot tell which they are.
_UNIDENTIFIED = "(SELECT count(*) FROM {landing} WHERE sync_run_id = %(run)s AND clever_id IS NULL)"

# The (user, role) pairs on the roster of section `s` (its raw JSON).
_ROSTER_MEMBERS = """
    CROSS JOIN LATERAL (
        SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(s.raw -> 'students') = 'array'
                                              THEN s.raw -> 'students' ELSE '[]' END), 'student'
        UNION ALL
        SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(s.raw -> 'teachers') = 'array'
                                              THEN s.raw -> 'teachers' ELSE '[]' END), 'teacher'
        UNION ALL
        SELECT s.raw ->> 'teacher', 'teacher' WHERE s.raw ->> 'teacher' IS NOT NULL
    ) AS member(user_id, role)"""

# What both enrolment counts share: the district's active associations, and how many of
# them (of the sections in scope) the run no longer holds. The sections of quarantined
# records keep their last clean version, so their associations count as present.
_ENROLLMENTS_COUNTED = """
active AS (
    SELECT section_id, user_id, role FROM {snapshot}
    WHERE district_slug = %(district)s AND dbt_valid_to IS NULL AND dbt_is_deleted = 'False'
)
SELECT (SELECT count(*) FROM active),
       (SELECT count(*) FROM active AS e
        WHERE IN_SCOPE NOT EXISTS (SELECT 1 FROM present AS p
                          WHERE p.section_id = e.section_id AND p.user_id = e.user_id AND p.role = e.role)
          AND NOT EXISTS (SELECT 1 FROM clever_landing.quarantine AS q
                          WHERE q.sync_run_id = %(run)s AND q.endpoint = 'sections' AND q.clever_id = e.section_id)),
       {unidentified},
       0  -- an association is there or not; its one attribute (primary teacher) is not counted
"""
# An association is present if this run's sections list it.
_ENROLLMENTS_WOULD_ARCHIVE = """
WITH present AS (
    SELECT s.clever_id AS section_id, member.user_id, member.role
    FROM clever_landing.sections AS s
    {members}
    WHERE s.sync_run_id = %(run)s AND s.clever_id IS NOT NULL
),
""" + _ENROLLMENTS_COUNTED.replace("IN_SCOPE ", "")


# With the section hashes the enrolment snapshot was last built from (the dbt macro
# save_compare_scope keeps them), only the rosters of sections whose record changed, or
# that are missing from this run, can lose associations: only those are expanded.
_ENROLLMENTS_WOULD_ARCHIVE_SCOPED = """
WITH run_sections AS (
    SELECT clever_id, raw, md5(raw::text) AS record_hash FROM clever_landing.sections
    WHERE sync_run_id = %(run)s AND clever_id IS NOT NULL
),
changed AS (
    SELECT coalesce(r.clever_id, h.scope_id) AS section_id, r.raw
    FROM run_sections AS r
    FULL JOIN (SELECT scope_id, scope_hash FROM {scope_hashes} WHERE district_slug = %(district)s) AS h
      ON h.scope_id = r.clever_id
    WHERE r.record_hash IS DISTINCT FROM h.scope_hash
),
present AS (
    SELECT s.section_id, member.user_id, member.role
    FROM changed AS s
    {members}
    WHERE s.raw IS NOT NULL
),
""" + _ENROLLMENTS_COUNTED.replace("IN_SCOPE", "e.section_id IN (SELECT section_id FROM changed) AND")
ENROLLMENT_SCOPE_HASHES = "snap_clever__section_enrollments__scope_hashes"

# An events run (clever.events) archives what its deletion events name, never what it
# lacks: it holds only the records that changed. Quarantined changes are not applied.
_EVENT_CHANGES = """
changes AS (
    SELECT c.clever_id, c.action, l.raw, md5(l.raw::text) AS record_hash
    FROM clever_landing.event_changes AS c
    LEFT JOIN {landing} AS l ON l.sync_run_id = c.sync_run_id AND l.clever_id = c.clever_id
    WHERE c.sync_run_id = %(run)s AND c.endpoint = %(endpoint)s
      AND NOT EXISTS (SELECT 1 FROM clever_landing.quarantine AS q
                      WHERE q.sync_run_id = %(run)s AND q.endpoint = %(endpoint)s AND q.clever_id = c.clever_id)
)"""
# The district's active records (dbt macro active_version_predicate: the same text, so
# the snapshot's partial index of active keys serves it). An events run counts them from
# that index alone and looks up only the records it changes, never every version.
_ACTIVE = "{alias}.district_slug = %(district)s AND {alias}.dbt_valid_to IS NULL AND {alias}.dbt_is_deleted = 'False'"
_ACTIVE_COUNT = "(SELECT count(*) FROM {snapshot} AS a WHERE " + _ACTIVE.format(alias="a") + ")"
_ACTIVE_KEY = "s.clever_id = c.clever_id AND " + _ACTIVE.format(alias="s")
_ENTITY_EVENTS_WOULD_ARCHIVE = "WITH" + _EVENT_CHANGES + f"""
SELECT {_ACTIVE_COUNT},
       (SELECT count(*) FROM changes AS c JOIN {{snapshot}} AS s ON {_ACTIVE_KEY} WHERE c.action = 'deleted'),
       0,
       (SELECT count(*) FROM changes AS c JOIN {{snapshot}} AS s ON {_ACTIVE_KEY}
        WHERE c.action <> 'deleted' AND c.record_hash IS DISTINCT FROM s.record_hash)
"""
# The rosters of the sections the run changed or deleted: their active associations it
# lacks, each section's looked up by its key (OFFSET 0 keeps the lookup per section).
_ENROLLMENTS_EVENTS_WOULD_ARCHIVE = "WITH" + _EVENT_CHANGES + """,
changed AS (SELECT clever_id AS section_id, raw FROM changes),
present AS (
    SELECT s.section_id, member.user_id, member.role
    FROM changed AS s
    {members}
    WHERE s.raw IS NOT NULL
)
SELECT """ + _ACTIVE_COUNT + """,
       (SELECT count(*) FROM changed AS c CROSS JOIN LATERAL (
            SELECT e.section_id, e.user_id, e.role FROM {snapshot} AS e
            WHERE e.section_id = c.section_id AND """ + _ACTIVE.format(alias="e") + """ OFFSET 0) AS e
        WHERE NOT EXISTS (SELECT 1 FROM present AS p
                          WHERE p.section_id = e.section_id AND p.user_id = e.user_id AND p.role = e.role)),
       {unidentified},
       0
"""


# Clever's district states in which its own sync is not running normally: archiving waits.
ARCHIVE_WAITS_IN_STATES = ("paused", "error")


def _moment(text: str | None) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def archive_wait_reason(conn: psycopg.Connection, district_slug: str, sync_run_id: int,
                        now: datetime | None = None) -> str | None:
    """Why this run may archive nothing, from Clever's district record (this run's, else
    the current one): its sync state ``paused`` or ``error``, or now inside its
    ``pause_start``..``pause_end``. None when archiving may go on."""
    row = conn.execute("SELECT raw ->> 'state', raw ->> 'pause_start', raw ->> 'pause_end' "
                       "FROM clever_landing.districts WHERE sync_run_id = %s AND clever_id IS NOT NULL LIMIT 1",
                       (sync_run_id,)).fetchone()
    if row is None and conn.execute("SELECT to_regclass(%s)", (DATA_TYPE["districts"].snapshot_relation,)
                                    ).fetchone()[0] is not None:
        row = conn.execute(
            f"SELECT raw ->> 'state', raw ->> 'pause_start', raw ->> 'pause_end' FROM "
            f"{DATA_TYPE['districts'].snapshot_relation} WHERE district_slug = %s AND dbt_valid_to IS NULL "
            "AND dbt_is_deleted = 'False' "
            "LIMIT 1", (district_slug,)).fetchone()
    if row is None:
        return None
    state, pause_start, pause_end = row
    if state in ARCHIVE_WAITS_IN_STATES:
        return f"Clever reports the district's sync as {state!r}"
    start, end = _moment(pause_start), _moment(pause_end)
    now = now or datetime.now(UTC)
    if start is not None and start <= now and (end is None or now < end):
        return f"the district is inside its Clever pause ({pause_start} to {pause_end or 'open-ended'})"
    return None


class MassArchiveBlocked(RuntimeError):
    """The run would archive more than the district allows; nothing was archived."""


@dataclass(frozen=True)
class GuardCheck:
    data_type: str
    active_before: int
    would_archive: int
    limit: int
    unidentified: int = 0  # records of the run without a readable Clever id
    would_change: int = 0  # active records this run gives a new version
    change_limit: int | None = None
    archive_waits: bool = False  # Clever paused the district: this type is not applied, so nothing is archived

    @property
    def deferred(self) -> bool:
        return self.archive_waits and self.would_archive > 0

    @property
    def archive_tripped(self) -> bool:
        if self.deferred:
            return False
        return self.would_archive > self.limit or (self.unidentified > 0 and self.would_archive > 0)

    @property
    def change_tripped(self) -> bool:
        return self.change_limit is not None and self.would_change > self.change_limit

    @property
    def tripped(self) -> bool:
        return self.archive_tripped or self.change_tripped

    @property
    def holds(self) -> list[str]:
        """Which holds tripped ('archive', 'change'), and 'paused' when the type waits for
        Clever's pause to end."""
        return [name for name, hit in (("archive", self.archive_tripped), ("change", self.change_tripped),
                                       ("paused", self.deferred)) if hit]

    def describe(self) -> str:
        def share(count: int) -> str:
            return f"{count / self.active_before:.1%}" if self.active_before else "0.0%"

        unreadable = (f"; {self.unidentified} record(s) of this run have no readable Clever id and could be "
                      "among them" if self.unidentified and self.would_archive else "")
        changed = (f"; would change {self.would_change} ({share(self.would_change)}; limit {self.change_limit})"
                   if self.change_limit is not None else "")
        return (f"{self.data_type}: would archive {self.would_archive} of {self.active_before} active "
                f"({share(self.would_archive)}; limit {self.limit}){unreadable}{changed}")


def archive_limit(active: int, threshold: float, floor: int) -> int:
    """How many of ``active`` records one sync may archive (or change): a share, never
    below the floor."""
    return max(floor, math.floor(active * threshold))


def check_run(conn: psycopg.Connection, district_slug: str, sync_run_id: int, endpoints: set[str],
              threshold: float, floor: int, change_threshold: float = 0.75,
              archive_waits: bool = False) -> list[GuardCheck]:
    """What approving this run's ``endpoints`` would archive, per data type: for a full
    sync, the active records it lacks; for an events run, those its deletions name."""
    from clever.runs import run_mode

    by_events = run_mode(conn, sync_run_id) == "events"
    with conn.transaction():
        # Read-only counts over a district's rows: JIT compiling them cost a second at a
        # million students, and an events run's roster comparison sorted both sides to
        # disk for a merge join where one hash does.
        conn.execute("SET LOCAL jit = off")
        conn.execute("SET LOCAL enable_mergejoin = off")
        checks = [check for guarded in GUARDED
                  if (check := _check_type(conn, guarded, district_slug, sync_run_id, endpoints, by_events, threshold,
                                           floor, change_threshold, archive_waits)) is not None]
    return checks


def _check_type(conn: psycopg.Connection, guarded: DataType, district_slug: str, sync_run_id: int, endpoints: set[str],
                by_events: bool, threshold: float, floor: int, change_threshold: float,
                archive_waits: bool) -> GuardCheck | None:
    data_type, endpoint, snapshot = guarded.name, guarded.endpoint, guarded.snapshot
    if endpoint not in endpoints:
        return None
    if conn.execute("SELECT to_regclass(%s)", (guarded.snapshot_relation,)).fetchone()[0] is None:
        return None  # first sync: nothing is active, nothing can be archived
    template = _ENTITY_EVENTS_WOULD_ARCHIVE if by_events else _ENTITY_WOULD_ARCHIVE
    if data_type == "enrollments" and by_events:
        template = _ENROLLMENTS_EVENTS_WOULD_ARCHIVE
    elif data_type == "enrollments":
        scoped = conn.execute("SELECT to_regclass(%s)", (f"{SNAPSHOT_SCHEMA}.{ENROLLMENT_SCOPE_HASHES}",)
                              ).fetchone()[0] is not None
        template = _ENROLLMENTS_WOULD_ARCHIVE_SCOPED if scoped else _ENROLLMENTS_WOULD_ARCHIVE
    query = sql.SQL(template).format(
        landing=sql.Identifier("clever_landing", endpoint), snapshot=sql.Identifier(SNAPSHOT_SCHEMA, snapshot),
        scope_hashes=sql.Identifier(SNAPSHOT_SCHEMA, ENROLLMENT_SCOPE_HASHES), members=sql.SQL(_ROSTER_MEMBERS),
        unidentified=sql.SQL(_UNIDENTIFIED).format(landing=sql.Identifier("clever_landing", endpoint)))
    active, missing, unidentified, changed = conn.execute(
        query, {"run": sync_run_id, "district": district_slug, "endpoint": endpoint}).fetchone()
    return GuardCheck(data_type, active, missing, archive_limit(active, threshold, floor), unidentified, changed,
                      None if data_type == "enrollments" else archive_limit(active, change_threshold, floor),
                      archive_waits)


def enforce(conn: psycopg.Connection, district_slug: str, sync_run_id: int, endpoints: set[str],
            threshold: float, floor: int, allow_mass_archive: bool, change_threshold: float = 0.75,
            archive_waits: bool = False) -> list[GuardCheck]:
    """Record the checks; raise MassArchiveBlocked if any tripped and no override was given.
    With ``archive_waits`` (Clever paused the district) a type that would archive anything
    is ``deferred``: the caller leaves its endpoint out of the approval."""
    checks = check_run(conn, district_slug, sync_run_id, endpoints, threshold, floor, change_threshold,
                       archive_waits)
    tripped = [c for c in checks if c.tripped]
    with conn.transaction():
        conn.execute("DELETE FROM clever_landing.guard_checks WHERE sync_run_id = %s", (sync_run_id,))
        for c in checks:
            conn.execute(
                """INSERT INTO clever_landing.guard_checks
                   (sync_run_id, data_type, active_before, would_archive, limit_count, tripped, overridden,
                    would_change, change_limit, holds)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (sync_run_id, c.data_type, c.active_before, c.would_archive, c.limit, c.tripped,
                 c.tripped and allow_mass_archive, c.would_change, c.change_limit, c.holds),
            )
    if tripped and not allow_mass_archive:
        raise MassArchiveBlocked(
            f"district {district_slug!r}, sync run {sync_run_id}: mass-archive guard tripped; nothing was archived. "
            + "; ".join(c.describe() for c in tripped)
            + f". Limits: {threshold:.0%} of a type's active records archived, {change_threshold:.0%} changed "
            f"(floor {floor}; Clever's own review holds at 10% and 75%). If Clever really stopped sharing or "
            "changed these records, trigger the DAG again with allow_mass_archive=true.")
    return checks
