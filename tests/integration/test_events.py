"""Events districts (clever.events): the same days applied through Clever's Events API give
the marts and history full syncs give; replayed and duplicate events change nothing; a
cursor Clever no longer holds, or events turned off, fall back to a full sync; a burst of
deletion events is held by the mass-archive guard; a read that fails in the middle applies
nothing and the next run resumes after its last landed page."""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from pathlib import Path

import psycopg
import pytest

from clever import steps
from clever.config import get_district
from clever.connections import CleverEndpoint, WarehouseTarget
from clever.guard import MassArchiveBlocked
from clever.summary import format_summary
from clever_devkit.events_log import Change
from clever_devkit.simulator import CleverSimulator
from tests.conftest import DEMO_TOKEN, copy_sample_district, database
from tests.helpers import load_records, write_records

VERSION = "v3.0"
ROSTER_MARTS = ("dim_districts", "dim_schools", "dim_users", "dim_sections", "dim_terms", "dim_courses",
                "fct_enrollments")
# When and by which run a record was seen or versioned: different runs, different times.
_RUN_COLUMNS = {"last_seen_at", "first_seen_at", "archived_at", "archived_last_seen_at", "version_valid_from",
                "version_sync_run_id", "snapshot_updated_at", "sync_run_id", "synced_at"}
SNAPSHOTS = {"snap_clever__districts": "clever_id", "snap_clever__schools": "clever_id",
             "snap_clever__users": "clever_id", "snap_clever__sections": "clever_id",
             "snap_clever__terms": "clever_id", "snap_clever__courses": "clever_id",
             "snap_clever__section_enrollments": "section_id, user_id, role"}


@pytest.fixture
def events_district():
    return dataclasses.replace(get_district("demo"), sync_mode="events", full_sync_schedule=None)


@pytest.fixture
def served(tmp_path, pg_server, synced_demo_template):
    """(district files, simulator, warehouse): the sample district served from files a test
    changes, and a copy of the warehouse synced from it in full once."""
    district_dir = copy_sample_district(tmp_path / "district")
    with CleverSimulator({"demo": (DEMO_TOKEN, district_dir)}, seed=7) as sim, \
            database(pg_server, synced_demo_template, prefix="events") as url:
        yield district_dir, sim, url


def rename_user(district_dir: Path, index: int, last_name: str) -> dict:
    users = load_records(district_dir, VERSION, "users")
    users[index]["name"]["last"] = last_name
    write_records(district_dir, VERSION, "users", users)
    return users[index]


def sync(url: str, district, sim: CleverSimulator, *, validate: bool = True, **params) -> steps.SyncContext:
    # Data Docs in a directory of their own: run ids repeat across the tests' warehouses
    ctx = steps.SyncContext(target=WarehouseTarget.from_conninfo(url), district=district,
                            params=steps.RunParams(**params), api=CleverEndpoint(sim.base_url, DEMO_TOKEN),
                            validation_docs_dir=Path(tempfile.mkdtemp(prefix="events-data-docs-")))
    skip = frozenset() if validate else frozenset({"validate"})
    return steps.run_sync(ctx, skip=skip)


def run_row(url: str, run_id: int) -> dict:
    with psycopg.connect(url) as conn:
        cur = conn.execute("SELECT * FROM clever_landing.sync_runs WHERE sync_run_id = %s", (run_id,))
        return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def marts(url: str) -> dict[str, list[tuple]]:
    """Every roster mart's rows without the columns that say when or by which run."""
    result = {}
    with psycopg.connect(url) as conn:
        for mart in ROSTER_MARTS:
            cur = conn.execute(f"SELECT * FROM clever_marts.{mart} LIMIT 0")
            columns = [c.name for c in cur.description if c.name not in _RUN_COLUMNS]
            select = ", ".join(f'"{c}"::text' for c in columns)
            result[mart] = conn.execute(f"SELECT {select} FROM clever_marts.{mart} ORDER BY 1, 2, 3, 4").fetchall()
    return result


def histories(url: str) -> dict[str, list[tuple]]:
    """Each snapshot's versions per key, in order: (key, is_deleted, record_hash)."""
    with psycopg.connect(url) as conn:
        return {snapshot: conn.execute(
            f"SELECT {keys}, dbt_is_deleted, record_hash FROM clever_snapshots.{snapshot} "
            f"ORDER BY {keys}, dbt_valid_from").fetchall() for snapshot, keys in SNAPSHOTS.items()}


def history_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        return sum(conn.execute(f"SELECT count(*) FROM clever_snapshots.{s}").fetchone()[0] for s in SNAPSHOTS)


def _students(users: list[dict]) -> list[dict]:
    return [u for u in users if "student" in u["roles"]]


def day_one(district_dir: Path) -> dict:
    """Unshare a student, rename a teacher, move a student between sections, remove a
    co-teacher, move a student to another school, add a user."""
    users = load_records(district_dir, VERSION, "users")
    sections = load_records(district_dir, VERSION, "sections")
    schools = [s["id"] for s in load_records(district_dir, VERSION, "schools")]
    student = _students(users)[0]
    users.remove(student)
    for section in sections:
        if student["id"] in section.get("students", []):
            section["students"].remove(student["id"])
    teacher = next(u for u in users if "teacher" in u["roles"])
    teacher["name"]["last"] = "Renamed-by-events"
    co_taught = next(s for s in sections if len(s.get("teachers", [])) > 1)
    removed_co_teacher = next(t for t in co_taught["teachers"] if t != co_taught.get("teacher"))
    co_taught["teachers"].remove(removed_co_teacher)
    mover = _students(users)[1]
    source = next(s for s in sections if mover["id"] in s.get("students", []))
    target = next(s for s in sections if s["id"] != source["id"] and mover["id"] not in s.get("students", [])
                  and s.get("students"))
    source["students"].remove(mover["id"])
    target["students"].append(mover["id"])
    school_changer = _students(users)[2]
    role = school_changer["roles"]["student"]
    role["school"] = next(s for s in schools if s != role.get("school"))
    role["schools"] = [role["school"]]
    newcomer = copy.deepcopy(_students(users)[3])
    newcomer["id"] = "ffffffffffffffffffff0001"
    newcomer["name"]["first"] = "Newcomer"
    users.append(newcomer)
    write_records(district_dir, VERSION, "users", users)
    write_records(district_dir, VERSION, "sections", sections)
    return {"unshared": student, "sections_before": load_records(district_dir, VERSION, "sections")}


def reshare(district_dir: Path, student: dict, original_sections: list[dict]) -> None:
    users = load_records(district_dir, VERSION, "users")
    users.append(student)
    sections = load_records(district_dir, VERSION, "sections")
    rosters = {s["id"]: s.get("students", []) for s in original_sections}
    for section in sections:
        if student["id"] in rosters.get(section["id"], []) and student["id"] not in section.get("students", []):
            section["students"].append(student["id"])
    write_records(district_dir, VERSION, "users", users)
    write_records(district_dir, VERSION, "sections", sections)


def test_a_lifecycle_through_events_gives_the_marts_and_history_of_full_syncs(tmp_path, pg_server, events_district,
                                                                             synced_demo_template):
    district_dir = copy_sample_district(tmp_path / "district")
    full_district = get_district("demo")
    original_sections = load_records(district_dir, VERSION, "sections")
    # Both start from the sample district synced in full; the events district switched to
    # events since, so it has no cursor yet: its first run is a full sync that records one.
    with CleverSimulator({"demo": (DEMO_TOKEN, district_dir)}, seed=7) as sim, \
            database(pg_server, synced_demo_template, prefix="events") as by_events, \
            database(pg_server, synced_demo_template, prefix="full") as by_full:
        day_zero = history_rows(by_events)
        first = sync(by_events, events_district, sim)
        row = run_row(by_events, first.run_id)
        assert row["mode"] == "full" and row["mode_reason"].startswith("no events cursor for courses, districts")
        assert row["events_to"] is not None, "a full sync of an events district records where the events stand"
        assert history_rows(by_events) == day_zero

        changed = day_one(district_dir)
        second = sync(by_events, events_district, sim)
        sync(by_full, full_district, sim, validate=False)  # the events side is what is validated
        row = run_row(by_events, second.run_id)
        assert row["mode"] == "events" and row["events_from"] == run_row(by_events, first.run_id)["events_to"]
        summary = second.results["summarize"]
        assert summary["events"]["changes"]["users"] == {"created": 1, "deleted": 1, "updated": 2}
        assert set(summary["events"]["changes"]) == {"users", "sections"}
        assert "events after" in format_summary(summary)
        assert summary["history"]["users"]["archived"] == 1 and summary["history"]["users"]["added"] == 1
        assert marts(by_events) == marts(by_full)
        assert histories(by_events) == histories(by_full)
        with psycopg.connect(by_events) as conn:
            assert conn.execute("SELECT is_archived FROM clever_marts.dim_users WHERE clever_id = %s",
                                (changed["unshared"]["id"],)).fetchone() == (True,)

        reshare(district_dir, changed["unshared"], original_sections)
        third = sync(by_events, events_district, sim)
        sync(by_full, full_district, sim, validate=False)
        assert run_row(by_events, third.run_id)["mode"] == "events"
        assert third.results["summarize"]["history"]["users"]["restored"] == 1
        assert marts(by_events) == marts(by_full)
        assert histories(by_events) == histories(by_full)

        # Replayed events (the cursor set back to the first full sync's) and duplicates
        # (an update announcing the record as it is) change nothing.
        before = history_rows(by_events)
        with psycopg.connect(by_events) as conn:
            conn.execute("UPDATE clever_landing.current_extractions SET events_cursor = %s",
                         (run_row(by_events, first.run_id)["events_to"],))
        user = load_records(district_dir, VERSION, "users")[5]
        sim.add_events("demo", VERSION, [Change("users", "updated", user, user)] * 2)
        replay = sync(by_events, events_district, sim)
        assert run_row(by_events, replay.run_id)["mode"] == "events"
        assert replay.results["summarize"]["events"]["changes"]["users"]["updated"] >= 3
        assert history_rows(by_events) == before, "applying the same events again writes no history"
        assert marts(by_events) == marts(by_full)


def _latest_event(sim: CleverSimulator) -> str:
    import requests

    reply = requests.get(f"{sim.base_url}/{VERSION}/events", params={"ending_before": "last", "limit": 1},
                         headers={"Authorization": f"Bearer {DEMO_TOKEN}"}, timeout=10)
    return reply.json()["data"][0]["data"]["id"]


def test_a_full_sync_after_events_reports_what_events_missed_and_wins(served, events_district):
    district_dir, sim, url = served
    sync(url, events_district, sim, validate=False)
    renamed = rename_user(district_dir, 7, "Missed-by-events")
    with psycopg.connect(url) as conn:  # its event is lost: the cursor is already past it
        conn.execute("UPDATE clever_landing.current_extractions SET events_cursor = %s", (_latest_event(sim),))
    missed = sync(url, events_district, sim, validate=False)
    assert missed.results["summarize"]["mode"] == "events"
    assert missed.results["summarize"]["events"]["changes"] == {}

    full = sync(url, events_district, sim, validate=False, sync_mode="full")
    summary = full.results["summarize"]
    assert summary["reconciliation"] == {"after_events_run": missed.run_id,
                                         "differences": {"users": {"changed": 1}}}
    assert (f"reconciliation with events (up to run {missed.run_id}): users 1 changed (the full sync's data "
            "wins)") in format_summary(summary)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT last_name FROM clever_marts.dim_users WHERE clever_id = %s",
                            (renamed["id"],)).fetchone() == ("Missed-by-events",)


def _snapshot_state(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT clever_id, dbt_is_deleted, record_hash FROM clever_snapshots.snap_clever__users "
                            "WHERE dbt_valid_to IS NULL ORDER BY clever_id").fetchall()


def _unshare_students(district_dir: Path, count: int) -> list[str]:
    users = load_records(district_dir, VERSION, "users")
    gone = {u["id"] for u in _students(users)[:count]}
    write_records(district_dir, VERSION, "users", [u for u in users if u["id"] not in gone])
    sections = load_records(district_dir, VERSION, "sections")
    for section in sections:
        section["students"] = [s for s in section.get("students", []) if s not in gone]
    write_records(district_dir, VERSION, "sections", sections)
    return sorted(gone)


def test_a_burst_of_deletion_events_is_held_until_allowed(served, events_district):
    district_dir, sim, url = served
    sync(url, events_district, sim, validate=False)
    before = _snapshot_state(url)
    gone = _unshare_students(district_dir, 20)  # 20 of 149 users: over the limit of 14
    with pytest.raises(MassArchiveBlocked, match=r"users: would archive 20 of 149 active \(13.4%; limit 14\)"):
        sync(url, events_district, sim, validate=False)
    assert _snapshot_state(url) == before, "a held events run archives nothing"
    with psycopg.connect(url) as conn:
        held, events_from, events_to = conn.execute(
            "SELECT sync_run_id, events_from, events_to FROM clever_landing.sync_runs "
            "ORDER BY sync_run_id DESC LIMIT 1").fetchone()

    # The next run takes the held run's events over (nothing of them was applied) and is held the same way.
    with pytest.raises(MassArchiveBlocked, match="would archive 20 of 149"):
        sync(url, events_district, sim, validate=False)
    with psycopg.connect(url) as conn:
        again = conn.execute("SELECT sync_run_id, events_from, events_to FROM clever_landing.sync_runs "
                             "ORDER BY sync_run_id DESC LIMIT 1").fetchone()
    assert again[0] > held and again[1:] == (events_from, events_to)
    with psycopg.connect(url) as conn:
        checks = dict(conn.execute("SELECT data_type, would_archive FROM clever_landing.guard_checks "
                                   "WHERE sync_run_id = %s", (held,)).fetchall())
        # the changed sections' rosters lose exactly the unshared students' active associations
        gone_enrolments = conn.execute(
            "SELECT count(*) FROM clever_marts.fct_enrollments WHERE NOT is_archived AND user_id = ANY(%s)",
            (gone,)).fetchone()[0]
    assert checks["users"] == 20 and gone_enrolments > 20
    assert checks["enrollments"] == gone_enrolments

    allowed = sync(url, events_district, sim, validate=False, allow_mass_archive=True)
    assert allowed.results["summarize"]["mode"] == "events"
    assert allowed.results["summarize"]["history"]["users"]["archived"] == 20
    with psycopg.connect(url) as conn:
        archived = [r[0] for r in conn.execute(
            "SELECT clever_id FROM clever_marts.dim_users WHERE is_archived ORDER BY clever_id")]
    assert archived == gone


def test_an_events_read_that_fails_in_the_middle_applies_nothing_and_the_next_run_resumes(served, events_district):
    district = dataclasses.replace(events_district, page_size=4, http_max_attempts=1)
    district_dir, sim, url = served
    sync(url, district, sim, validate=False)
    before = _snapshot_state(url)
    gone = _unshare_students(district_dir, 3)  # 3 users and their sections: events over several pages
    sim.set_faults(fail_endpoint="events", fail_after_pages=2)
    with pytest.raises(Exception, match="endpoint 'events'"):
        sync(url, district, sim, validate=False)
    assert _snapshot_state(url) == before, "nothing of a failed read is applied"
    with psycopg.connect(url) as conn:
        failed, events_to, landed = conn.execute(
            """SELECT r.sync_run_id, r.events_to, e.row_count FROM clever_landing.sync_runs AS r
               JOIN clever_landing.endpoint_runs AS e ON e.sync_run_id = r.sync_run_id AND e.endpoint = 'events'
               WHERE r.status = 'failed' ORDER BY r.sync_run_id DESC LIMIT 1""").fetchone()
        assert landed == 8 and events_to == conn.execute(
            "SELECT max(event_id) FROM clever_landing.events WHERE sync_run_id = %s", (failed,)).fetchone()[0]

    sim.reset()
    resumed = sync(url, district, sim, validate=False)
    with psycopg.connect(url) as conn:
        first_read = conn.execute(  # the first event this run read itself (the rest it took over)
            "SELECT min(event_id) FROM clever_landing.events WHERE sync_run_id = %s AND extracted_at > "
            "(SELECT max(extracted_at) FROM clever_landing.events WHERE sync_run_id = %s)",
            (resumed.run_id, failed)).fetchone()[0]
        carried = conn.execute("SELECT count(*) FROM clever_landing.events WHERE sync_run_id = %s "
                               "AND event_id <= %s", (resumed.run_id, events_to)).fetchone()[0]
    assert carried == 8 and first_read > events_to, "the next run read on after the failed run's last page"
    assert resumed.results["summarize"]["history"]["users"]["archived"] == 3
    with psycopg.connect(url) as conn:
        assert [r[0] for r in conn.execute("SELECT clever_id FROM clever_marts.dim_users WHERE is_archived "
                                           "ORDER BY clever_id")] == gone

    # Landing retention keeps what the staging views read: the full extraction and the
    # events runs whose changes go over it (the rest goes); nothing changes afterwards.
    from clever.retention import prune_landing

    staged = marts(url)
    assert sum(p.rows for p in prune_landing(url, "demo", 0)) > 0
    quiet = sync(url, district, sim, validate=False)
    assert quiet.results["summarize"]["mode"] == "events"
    assert sum(h["history_rows"] for h in quiet.results["summarize"]["history"].values()) == 0
    assert marts(url) == staged


def test_events_that_clever_no_longer_serves_fall_back_to_a_full_sync(served, events_district):
    from datetime import UTC, datetime, timedelta

    from clever.events import plan_mode

    district_dir, sim, url = served
    sync(url, events_district, sim, validate=False)
    rename_user(district_dir, 3, "Changed-while-events-were-off")
    sim.set_events("demo", enabled=False)  # Clever answers 404, as when events are not enabled
    fallback = sync(url, events_district, sim, validate=False)
    summary = fallback.results["summarize"]
    assert summary["mode"] == "full" and "events unavailable, Clever answered: " in summary["mode_reason"]
    assert "HTTP 404" in summary["mode_reason"] and summary["history"]["users"]["changed"] == 1
    with psycopg.connect(url) as conn:
        plan = plan_mode(conn, events_district)
    assert plan.mode == "full" and plan.reason.startswith("no events cursor for")

    sim.set_events("demo", enabled=True)
    baseline = sync(url, events_district, sim, validate=False)
    assert baseline.results["summarize"]["mode"] == "full"
    sim.set_events("demo", retention_seconds=0)  # every event expires: the cursor is no longer held
    rename_user(district_dir, 3, "Changed-after-the-cursor-expired")
    expired = sync(url, events_district, sim, validate=False)
    assert expired.results["summarize"]["mode"] == "full"
    assert "cursor unknown to Clever or older than the time it keeps events" in \
        expired.results["summarize"]["mode_reason"]
    assert expired.results["summarize"]["history"]["users"]["changed"] == 1

    # The plan: events while the cursor is fresh; a full sync past Clever's retention or when one is due.
    sim.set_events("demo", retention_seconds=30 * 86400)
    sync(url, events_district, sim, validate=False)
    with psycopg.connect(url) as conn:
        assert plan_mode(conn, events_district).mode == "events", plan_mode(conn, events_district)
        now = datetime.now(UTC)
        stale = plan_mode(conn, events_district, now=now + timedelta(days=31))
        assert stale.mode == "full" and "older than the 30 days Clever keeps events" in stale.reason
        weekly = dataclasses.replace(events_district, full_sync_schedule="@weekly")
        due = plan_mode(conn, weekly, now=now + timedelta(days=8))
        assert due.mode == "full" and due.reason.startswith("scheduled full sync (@weekly")
        assert plan_mode(conn, weekly, "events", now=now + timedelta(days=8)).mode == "events"
        assert plan_mode(conn, weekly, "full").reason == "full sync requested by the trigger"
        with pytest.raises(ValueError, match="has sync_mode full"):
            plan_mode(conn, get_district("demo"), "events")


def test_each_changed_record_is_validated_against_the_district_as_the_events_leave_it(served, events_district):
    district_dir, sim, url = served
    sync(url, events_district, sim, validate=False)
    users = load_records(district_dir, VERSION, "users")
    nameless, renamed = _students(users)[:2]
    before = nameless["name"]
    del nameless["name"]                                  # a guaranteed field missing: quarantined
    renamed["name"]["last"] = "Renamed-by-events"
    write_records(district_dir, VERSION, "users", users)
    schools = load_records(district_dir, VERSION, "schools")
    new_school = {**copy.deepcopy(schools[0]), "id": "eeeeeeeeeeeeeeeeeeee0001", "name": "Opened Today"}
    write_records(district_dir, VERSION, "schools", [*schools, new_school])
    sections = load_records(district_dir, VERSION, "sections")
    moved, orphan = sections[:2]
    orphan_school = orphan["school"]
    moved["school"] = new_school["id"]                    # created by the same events run: resolves
    orphan["school"] = "0" * 24                           # no such school: quarantined
    write_records(district_dir, VERSION, "sections", sections)

    run = sync(url, events_district, sim)
    summary = run.results["summarize"]
    assert summary["mode"] == "events"
    assert summary["validated"]["users"]["checked"] == 2 and summary["validated"]["sections"]["checked"] == 2
    assert set(summary["quarantined"]) == {
        "users: guaranteed field name is present, not null and a JSON object",
        "sections: school refers to schools in the same extraction"}
    with psycopg.connect(url) as conn:
        names = dict(conn.execute("SELECT clever_id, last_name FROM clever_marts.dim_users WHERE clever_id = ANY(%s)",
                                  ([nameless["id"], renamed["id"]],)).fetchall())
        schools_of = dict(conn.execute("SELECT clever_id, school_id FROM clever_marts.dim_sections "
                                       "WHERE clever_id = ANY(%s)", ([moved["id"], orphan["id"]],)).fetchall())
    assert names == {nameless["id"]: before["last"], renamed["id"]: "Renamed-by-events"}, \
        "a quarantined change is not applied: the record keeps its last version"
    assert schools_of == {moved["id"]: new_school["id"], orphan["id"]: orphan_school}
