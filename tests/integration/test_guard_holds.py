"""The guard holds a run as Clever's own "Requires Review" would: more than 10% of a type's
active records archived, or more than 75% changed, in one sync (with the floor for small
districts); allow_mass_archive lets such a run through. The summary says which hold
tripped and by how much."""

from __future__ import annotations

import psycopg
import pytest

from clever import pipeline, runs
from clever.config import get_district
from clever.guard import GuardCheck, MassArchiveBlocked
from clever.summary import format_summary, summarize
from tests.conftest import DEMO_TOKEN
from tests.helpers import land_and_build, load_records, write_records


def _landed_run(url: str, district, base_url: str) -> int:
    run_id = runs.start_run(url, district, None)
    for endpoint in district.endpoints:
        pipeline.extract(url, district, run_id, endpoint, base_url, DEMO_TOKEN)
    assert runs.close_extraction(url, run_id) == "completed"
    return run_id


def _approve(url: str, district, run_id: int, allow: bool = False) -> list[str]:
    return pipeline.approve(url, run_id, threshold=district.mass_archive_threshold,
                            floor=district.mass_archive_floor, change_threshold=district.mass_update_threshold,
                            allow_mass_archive=allow)


def _checks(url: str, run_id: int) -> dict[str, tuple]:
    with psycopg.connect(url) as conn:
        return {row[0]: row[1:] for row in conn.execute(
            "SELECT data_type, would_archive, limit_count, would_change, change_limit, holds, tripped "
            "FROM clever_landing.guard_checks WHERE sync_run_id = %s", (run_id,))}


def _rename(users: list[dict], count: int) -> list[dict]:
    for user in users[:count]:
        user["name"]["middle"] = "Renamed"
    return users


@pytest.fixture
def warehouse_url(synced_warehouse_url):
    """The sample district after a first sync (a copy of the session's synced warehouse)."""
    return synced_warehouse_url


@pytest.fixture
def built():
    district = get_district("demo")
    assert district.mass_archive_threshold == 0.10 and district.mass_update_threshold == 0.75
    return district


def test_changing_more_than_three_quarters_of_a_type_is_held_until_allowed(warehouse_url, simulator, district_dir,
                                                                         built):
    users = load_records(district_dir, "v3.0", "users")
    assert len(users) == 149
    write_records(district_dir, "v3.0", "users", _rename(users, 120))  # 80.5%, limit floor(149 * 0.75) = 111
    run_id = _landed_run(warehouse_url, built, simulator.base_url)
    with pytest.raises(MassArchiveBlocked, match=r"users: would archive 0 of 149 active \(0.0%; limit 14\); "
                                                 r"would change 120 \(80.5%; limit 111\)"):
        _approve(warehouse_url, built, run_id)
    assert _checks(warehouse_url, run_id)["users"] == (0, 14, 120, 111, ["change"], True)
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT count(*) FROM clever_landing.approved_extractions WHERE sync_run_id = %s",
                            (run_id,)).fetchone()[0] == 0
    summary = format_summary(summarize(warehouse_url, run_id, None))
    assert "guard: users would change 120 of 149 (limit 111): BLOCKED" in summary

    assert "users" in _approve(warehouse_url, built, run_id, allow=True)
    assert _checks(warehouse_url, run_id)["users"][-1] is True


def test_changes_below_the_limit_pass(warehouse_url, simulator, district_dir, built):
    write_records(district_dir, "v3.0", "users", _rename(load_records(district_dir, "v3.0", "users"), 100))
    run_id = _landed_run(warehouse_url, built, simulator.base_url)
    assert "users" in _approve(warehouse_url, built, run_id)
    assert _checks(warehouse_url, run_id)["users"] == (0, 14, 100, 111, [], False)


def test_archiving_more_than_a_tenth_of_a_type_is_held(warehouse_url, simulator, district_dir, built):
    users = load_records(district_dir, "v3.0", "users")
    kept = [u for u in users if "student" not in u["roles"]] + [u for u in users if "student" in u["roles"]][15:]
    write_records(district_dir, "v3.0", "users", kept)  # 15 students of 149 users unshared: 10.1%
    run_id = _landed_run(warehouse_url, built, simulator.base_url)
    with pytest.raises(MassArchiveBlocked, match=r"users: would archive 15 of 149 active \(10.1%; limit 14\)"):
        _approve(warehouse_url, built, run_id)
    assert _checks(warehouse_url, run_id)["users"][-2:] == (["archive"], True)


def _active(url: str, clever_id: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT dbt_is_deleted = 'False' FROM clever_snapshots.snap_clever__users "
                            "WHERE clever_id = %s AND dbt_valid_to IS NULL", (clever_id,)).fetchone()[0]


def _set_district(district_dir, **fields) -> None:
    (record,) = load_records(district_dir, "v3.0", "districts")
    write_records(district_dir, "v3.0", "districts", [{**record, **fields}])


def test_while_clever_pauses_the_district_nothing_is_archived_until_it_runs_again(
        warehouse_url, simulator, district_dir, built):
    from clever.connections import WarehouseTarget

    users = load_records(district_dir, "v3.0", "users")
    gone = users[-1]["id"]
    write_records(district_dir, "v3.0", "users", users[:-1])  # unshared during the pause
    _set_district(district_dir, state="paused")
    run_id = _landed_run(warehouse_url, built, simulator.base_url)
    approved = _approve(warehouse_url, built, run_id)
    assert "users" not in approved and "schools" in approved and "districts" in approved
    assert _checks(warehouse_url, run_id)["users"][-2:] == (["paused"], False)
    pipeline.build(WarehouseTarget.from_conninfo(warehouse_url), built)
    assert _active(warehouse_url, gone), "nothing is archived during the pause"
    summary = format_summary(summarize(warehouse_url, run_id, None))
    assert "users would archive 1 of 149: not applied while Clever pauses the district" in summary

    _set_district(district_dir, state="running")
    land_and_build(warehouse_url, built, simulator.base_url, DEMO_TOKEN)
    assert not _active(warehouse_url, gone), "archived at the first sync after the pause"


@pytest.mark.parametrize(("fields", "waits"), [
    ({"state": "error"}, True),
    ({"state": "running", "pause_start": "2020-01-01T00:00:00Z", "pause_end": "2999-01-01T00:00:00Z"}, True),
    ({"state": "running", "pause_start": "2020-01-01T00:00:00Z", "pause_end": None}, True),
    ({"state": "running", "pause_start": "2020-01-01T00:00:00Z", "pause_end": "2020-02-01T00:00:00Z"}, False),
    ({"state": "success", "pause_start": "2999-01-01T00:00:00Z"}, False),
])
def test_clevers_district_state_and_pause_window(warehouse_url, simulator, district_dir, built, fields, waits):
    users = load_records(district_dir, "v3.0", "users")
    write_records(district_dir, "v3.0", "users", users[:-1])
    _set_district(district_dir, **fields)
    run_id = _landed_run(warehouse_url, built, simulator.base_url)
    assert ("users" not in _approve(warehouse_url, built, run_id)) is waits


def test_a_small_type_keeps_the_floor():
    check = GuardCheck("terms", active_before=6, would_archive=6, limit=10, would_change=6, change_limit=10)
    assert not check.tripped and check.holds == []


@pytest.mark.parametrize("snapshot", ["snap_clever__users", "snap_clever__section_enrollments"])
def test_the_guard_counts_active_records_from_the_snapshots_partial_index(warehouse_url, snapshot):
    """The guard's predicate for active records is the one the snapshot's partial index is
    built on (dbt macro active_version_predicate), so an events run counts a district's
    active records from the index alone instead of visiting every version."""
    from psycopg import sql

    from clever.guard import _ACTIVE_COUNT

    query = sql.SQL(_ACTIVE_COUNT).format(snapshot=sql.Identifier("clever_snapshots", snapshot))
    with psycopg.connect(warehouse_url) as conn:
        indexes = [r[0] for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'clever_snapshots' AND tablename = %s", (snapshot,))]
        assert any("WHERE ((dbt_valid_to IS NULL) AND (dbt_is_deleted = 'False'::text))" in i for i in indexes), indexes
        conn.execute("SET enable_seqscan = off")  # the sample district is small enough for a scan
        conn.execute("SET enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + query, {"district": "demo"}))
        count = conn.execute(query, {"district": "demo"}).fetchone()[0]
        expected = conn.execute(sql.SQL(
            "SELECT count(*) FROM {} WHERE district_slug = 'demo' AND dbt_valid_to IS NULL AND NOT dbt_is_deleted::boolean"
        ).format(sql.Identifier("clever_snapshots", snapshot))).fetchone()[0]
    assert "Index Only Scan" in plan and "_where_" in plan, plan
    assert count == expected > 0
