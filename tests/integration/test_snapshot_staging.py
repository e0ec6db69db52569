"""Our snapshot comparison (dbt_project/macros/snapshot_staging_table.sql) writes exactly
the history dbt's own snapshot SQL writes; the mass-archive guard counts the same with
the section hashes it keeps as by expanding every roster; and the incremental tables fed
by the snapshots, updated day by day, equal a rebuild from the whole history.

Two warehouses sync the same district through the same days, one with our macro and one
with dbt's default__snapshot_staging_table (CLEVER_SNAPSHOT_STAGING=dbt). After every day
each snapshot must hold the same versions in both: same keys, order, archive flags,
columns and current rows (only the build times differ). The days cover what the macro
special-cases: edits, unshare and reshare of every data type, a changed roster (students
moved, a primary teacher changed, a whole section unshared and reshared), a new record,
an unchanged day, and a build without the saved section hashes (every key compared).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg

from clever import pipeline, runs
from clever.catalog import SNAPSHOTTED
from clever.config import load_districts
from clever.connections import WarehouseTarget
from clever.dbt_runner import run_dbt
from clever.warehouse import ensure_landing_schema
from clever_devkit.simulator import CleverSimulator
from tests.conftest import DEMO_TOKEN, database
from tests.helpers import load_records, write_records

SNAPSHOTS = {data_type.snapshot: data_type.key for data_type in SNAPSHOTTED}
SCOPE_HASHES = "clever_snapshots.snap_clever__section_enrollments__scope_hashes"
# Models kept up to date from the snapshots' new versions only (macros/archived_dimension.sql).
INCREMENTAL = ["int_state__*", "int_reports__daily_changes"]
TEAM_TAUGHT_SECTION = "746fbcb27aa4cbbe52c21813"


def _sync_and_snapshot(url: str, district, base_url: str, staging: str) -> None:
    run = runs.start_run(url, district, None)
    for endpoint in district.endpoints:
        pipeline.extract(url, district, run, endpoint, base_url, DEMO_TOKEN)
    runs.close_extraction(url, run)
    if staging == "dbt":  # the mass-archive guard expands every roster, as without saved hashes
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {SCOPE_HASHES}")
    pipeline.approve(url, run, threshold=district.mass_archive_threshold, floor=district.mass_archive_floor,
                     allow_mass_archive=True)
    os.environ["CLEVER_SNAPSHOT_STAGING"] = staging
    try:  # ours also keeps the incremental tables fed by the snapshots up to date
        selected = ["snap_clever__*"] + (INCREMENTAL if staging == "clever" else [])
        run_dbt(WarehouseTarget.from_conninfo(url), ["build", "--select", *selected])
    finally:
        del os.environ["CLEVER_SNAPSHOT_STAGING"]


def _incremental_tables(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url) as conn:
        return {table: {row[0] for row in conn.execute(
                    f"SELECT (to_jsonb(t) - 'covered_until')::text FROM clever_intermediate.{table} AS t")}
                for (table,) in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'clever_intermediate' "
                    "AND (tablename LIKE 'int\\_state\\_\\_%' OR tablename = 'int_reports__daily_changes')")}


def _history(url: str) -> dict[str, set[str]]:
    """Every snapshot row without its build times and dbt ID, numbered per key."""
    history = {}
    with psycopg.connect(url) as conn:
        for snapshot, keys in SNAPSHOTS.items():
            key_list = ", ".join(keys)
            history[snapshot] = {row[0] for row in conn.execute(f"""
                SELECT (to_jsonb(s) - 'dbt_scd_id' - 'dbt_updated_at' - 'dbt_valid_from' - 'dbt_valid_to'
                        - 'synced_at' || jsonb_build_object(
                            'is_current', s.dbt_valid_to IS NULL,
                            'version', row_number() OVER (PARTITION BY {key_list} ORDER BY s.dbt_valid_from)))::text
                FROM clever_snapshots.{snapshot} AS s""")}
    return history


def _guard_checks(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT sync_run_id, data_type, active_before, would_archive FROM "
                            "clever_landing.guard_checks ORDER BY 1, 2").fetchall()


def _versions(url: str, snapshot: str, where: str) -> list[tuple[str, bool]]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT dbt_is_deleted, dbt_valid_to IS NULL FROM clever_snapshots.{snapshot} "
                            f"WHERE {where} ORDER BY dbt_valid_from").fetchall()


def _day2(district_dir: Path) -> dict[str, str]:
    """Edits, unshares, a new user and changed rosters; returns the ids to look at."""
    users = load_records(district_dir, "v3.0", "users")
    sections = load_records(district_dir, "v3.0", "sections")
    students = [u for u in users if "student" in u["roles"]]
    rostered = {s for section in sections for s in section["students"]}
    unshared_student = next(u for u in students if u["id"] in rostered)
    edited = students[-1]
    edited["name"]["last"] += "-Changed"
    newcomer = json.loads(json.dumps(students[-2]))
    newcomer["id"] = "f" * 24
    users = [u for u in users if u["id"] != unshared_student["id"]] + [newcomer]
    write_records(district_dir, "v3.0", "users", users)

    team_taught = next(s for s in sections if s["id"] == TEAM_TAUGHT_SECTION)
    team_taught["teacher"], team_taught["teachers"] = team_taught["teachers"][1], team_taught["teachers"]
    moved = next(s for s in sections if len(s["students"]) > 2 and s["id"] != TEAM_TAUGHT_SECTION)
    dropped_student = moved["students"].pop(0)
    moved["students"].append(newcomer["id"])
    unshared_section = next(s for s in sections if s["students"] and s["id"] not in (moved["id"], TEAM_TAUGHT_SECTION))
    sections = [s for s in sections if s["id"] != unshared_section["id"]]
    write_records(district_dir, "v3.0", "sections", sections)
    for endpoint in ("terms", "courses", "schools"):
        records = load_records(district_dir, "v3.0", endpoint)
        write_records(district_dir, "v3.0", endpoint, records[1:])
    return {"unshared_section": unshared_section["id"], "moved_section": moved["id"],
            "dropped_student": dropped_student, "newcomer": newcomer["id"]}


def test_snapshots_write_the_same_history_as_dbts_own_snapshot_sql(pg_server, district_dir, tmp_path):
    (tmp_path / "districts.yml").write_text("districts: [{slug: demo, extract_retries: 0}]\n")
    district = load_districts(tmp_path / "districts.yml")[0]
    day1 = {e: load_records(district_dir, "v3.0", e) for e in ("users", "sections", "terms", "courses", "schools")}
    sim = CleverSimulator({"demo": (DEMO_TOKEN, district_dir)}, seed=7)
    sim.start()
    with database(pg_server) as ours, database(pg_server) as theirs:
        try:
            for url in (ours, theirs):  # the landing schema and the staging views the snapshots read
                with psycopg.connect(url, autocommit=True) as conn:
                    ensure_landing_schema(conn)
                run_dbt(WarehouseTarget.from_conninfo(url), ["run", "--select", "path:models/staging"])

            def day(label: str) -> dict[str, set[str]]:
                _sync_and_snapshot(ours, district, sim.base_url, "clever")
                _sync_and_snapshot(theirs, district, sim.base_url, "dbt")
                assert _guard_checks(ours) == _guard_checks(theirs), (
                    f"{label}: the guard counts differently with the saved section hashes")
                mine, dbts = _history(ours), _history(theirs)
                for snapshot in SNAPSHOTS:
                    assert mine[snapshot] == dbts[snapshot], (
                        f"{label}: {snapshot} differs from dbt's history: only ours "
                        f"{[row[:300] for row in sorted(mine[snapshot] - dbts[snapshot])[:3]]}, only dbt's "
                        f"{[row[:300] for row in sorted(dbts[snapshot] - mine[snapshot])[:3]]}")
                return mine

            first = day("day 1")
            assert len(first["snap_clever__section_enrollments"]) > 500

            ids = _day2(district_dir)
            second = day("day 2 (edits, unshares, new user, rosters changed)")
            archived = {row[1]: row[3] for row in _guard_checks(ours) if row[0] == 2}
            assert archived["enrollments"] == len(
                [v for v in second["snap_clever__section_enrollments"] if '"dbt_is_deleted": "True"' in v]) > 1
            assert len(second["snap_clever__users"]) == len(first["snap_clever__users"]) + 3  # edit, archive, new
            section = f"section_id = '{ids['unshared_section']}'"
            assert {v for v in _versions(ours, "snap_clever__section_enrollments", section)} == {
                ("False", False), ("True", True)}, "an unshared section's roster is archived"
            assert _versions(ours, "snap_clever__section_enrollments",
                             f"section_id = '{ids['moved_section']}' AND user_id = '{ids['dropped_student']}'"
                             ) == [("False", False), ("True", True)]
            assert _versions(ours, "snap_clever__section_enrollments",
                             f"section_id = '{ids['moved_section']}' AND user_id = '{ids['newcomer']}'"
                             ) == [("False", True)]

            for endpoint, records in day1.items():  # everything shared again, edits undone
                write_records(district_dir, "v3.0", endpoint, records)
            with psycopg.connect(ours, autocommit=True) as conn:  # this build compares every key
                conn.execute(f"DROP TABLE {SCOPE_HASHES}")
            day("day 3 (reshared, section hashes missing)")
            assert _versions(ours, "snap_clever__section_enrollments",
                             f"{section} AND role = 'student'")[-1] == ("False", True)
            with psycopg.connect(ours) as conn:
                assert conn.execute(f"SELECT count(*) FROM {SCOPE_HASHES}").fetchone()[0] == len(day1["sections"])

            third = _history(ours)
            day("day 4 (unchanged)")
            assert _history(ours) == third, "an unchanged day writes no history"

            # Kept up to date day by day, the incremental tables equal a rebuild from the snapshots.
            incremental = _incremental_tables(ours)
            assert len(incremental) == 8 and all(incremental.values())
            run_dbt(WarehouseTarget.from_conninfo(ours), ["run", "--full-refresh", "--select", *INCREMENTAL])
            assert _incremental_tables(ours) == incremental
        finally:
            sim.stop()
