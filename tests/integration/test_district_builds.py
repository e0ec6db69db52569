"""Each district's build costs its own data and never stops another district.

Two districts share one warehouse: the sample district (demo) and a generated one
(other). A district's build is scoped to it (dbt_project/macros/build_scope.sql): it
must rewrite no row of the other district, two districts' builds may run at the same
time and give what they give one after the other, and a data problem of one district
(a quarantined district record, a failing data test on its rows) fails or warns for
that district alone while the other syncs, archives and restores as usual.
"""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest
import yaml

from clever import pipeline, runs, validation
from clever.config import load_districts
from clever.connections import WarehouseTarget
from clever.dbt_runner import DbtError
from clever.paths import REPO_ROOT
from clever.summary import format_summary, summarize
from clever_devkit.sample_district import generate
from clever_devkit.simulator import CleverSimulator
from tests.conftest import DEMO_TOKEN, copy_sample_district, database
from tests.helpers import land_and_build, load_records, write_records

OTHER_TOKEN = "other-district-token-7c1d"
# Tables every district shares, whose rows belong to one district each.
SHARED_SCHEMAS = ("clever_snapshots", "clever_intermediate", "clever_marts")


@pytest.fixture
def two_districts(tmp_path):
    """(districts by slug, simulator, data dirs): demo and other, served by one simulator."""
    dirs = {"demo": copy_sample_district(tmp_path / "demo"), "other": tmp_path / "other"}
    generate(dirs["other"], seed=7, district_name="Other USD")
    config = tmp_path / "districts.yml"
    config.write_text(yaml.safe_dump({"districts": [{"slug": "demo"}, {"slug": "other"}]}))
    districts = {d.slug: d for d in load_districts(config)}
    with CleverSimulator({"demo": (DEMO_TOKEN, dirs["demo"]), "other": (OTHER_TOKEN, dirs["other"])}) as sim:
        yield districts, sim, dirs


def token(slug: str) -> str:
    return DEMO_TOKEN if slug == "demo" else OTHER_TOKEN


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def shared_tables(url: str) -> list[str]:
    return [f"{schema}.{table}" for schema, table in query(url, """
        SELECT c.table_schema, c.table_name FROM information_schema.columns AS c
        JOIN information_schema.tables AS t USING (table_schema, table_name)
        WHERE c.column_name = 'district_slug' AND t.table_type = 'BASE TABLE' AND c.table_schema = ANY(%s)
        ORDER BY 1, 2""", (list(SHARED_SCHEMAS),))]


def row_versions(url: str, slug: str) -> dict[str, set[tuple[str, str]]]:
    """Every stored row of a district, by its physical identity: a rewritten row (even
    with the same values) gets a new ctid and xmin."""
    return {table: set(query(url, f"SELECT ctid::text, xmin::text FROM {table} WHERE district_slug = %s", (slug,)))
            for table in shared_tables(url)}


def test_a_district_build_rewrites_no_row_of_another_district(warehouse_url, two_districts):
    districts, sim, dirs = two_districts
    for slug in ("demo", "other"):
        land_and_build(warehouse_url, districts[slug], sim.base_url, token(slug))
    other_before = row_versions(warehouse_url, "other")
    assert sum(map(len, other_before.values())) > 1000 and len(other_before) >= 20

    users = load_records(dirs["demo"], "v3.0", "users")
    write_records(dirs["demo"], "v3.0", "users", users[1:])
    land_and_build(warehouse_url, districts["demo"], sim.base_url, DEMO_TOKEN)

    assert query(warehouse_url, "SELECT clever_id FROM clever_marts.dim_users WHERE is_archived") == [
        (users[0]["id"],)]
    assert row_versions(warehouse_url, "other") == other_before


def _history(url: str) -> dict[str, list[str]]:
    """Each shared table's rows without the times a build stamps on them."""
    stamped = ["dbt_scd_id", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to", "snapshot_updated_at",
               "covered_until", "archived_at", "version_valid_from", "first_seen_at", "archived_last_seen_at",
               "matched_since", "synced_at", "data_as_of", "scanned_through", "detected_at"]
    drop = " - ".join(f"'{column}'" for column in stamped)
    return {table: sorted(row[0] for row in query(url, f"SELECT (to_jsonb(t) - {drop})::text FROM {table} AS t"))
            for table in shared_tables(url)}


BUILD_SCRIPT = """
import json, sys, time
from pathlib import Path
from clever import pipeline
from clever.config import load_districts
from clever.connections import WarehouseTarget
district = next(d for d in load_districts(Path(sys.argv[2])) if d.slug == sys.argv[3])
started = time.time()
pipeline.build(WarehouseTarget.from_conninfo(sys.argv[1]), district)
print(json.dumps({"started": started, "finished": time.time()}))
"""


def test_two_districts_building_at_once_write_what_they_write_one_after_the_other(
        pg_server, two_districts, tmp_path):
    districts, sim, dirs = two_districts
    config = tmp_path / "districts.yml"
    with database(pg_server, prefix="day1") as day1:
        for slug in ("demo", "other"):
            land_and_build(day1, districts[slug], sim.base_url, token(slug))
        # Day 2 for both: a user unshared, a section's roster changed, a user edited.
        for slug, version in (("demo", "v3.0"), ("other", "v3.0")):
            users = load_records(dirs[slug], version, "users")
            users[5]["name"]["last"] = "Renamed"
            write_records(dirs[slug], version, "users", users[1:])
            sections = load_records(dirs[slug], version, "sections")
            sections[0]["students"] = sections[0]["students"][1:]
            write_records(dirs[slug], version, "sections", sections)
        day1_name = day1.rpartition("/")[2]
        with database(pg_server, template=day1_name) as one_by_one, \
                database(pg_server, template=day1_name) as at_once:
            for url in (one_by_one, at_once):
                for slug in ("demo", "other"):
                    run = runs.start_run(url, districts[slug], None)
                    for endpoint in districts[slug].endpoints:
                        pipeline.extract(url, districts[slug], run, endpoint, sim.base_url, token(slug))
                    runs.close_extraction(url, run)
                    pipeline.approve(url, run, threshold=0.5, floor=10)
            for slug in ("demo", "other"):
                pipeline.build(WarehouseTarget.from_conninfo(one_by_one), districts[slug])
            builds = [subprocess.Popen([sys.executable, "-c", BUILD_SCRIPT, at_once, str(config), slug],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       cwd=REPO_ROOT) for slug in ("demo", "other")]
            results = [build.communicate(timeout=600) for build in builds]
            assert [build.returncode for build in builds] == [0, 0], [err[-3000:] for _, err in results]
            (demo, other) = (json.loads(out.strip().splitlines()[-1]) for out, _ in results)
            assert demo["started"] < other["finished"] and other["started"] < demo["finished"], "not concurrent"

            sequential, concurrent = _history(one_by_one), _history(at_once)
            assert concurrent == sequential
            archived = query(at_once, "SELECT district_slug, count(*) FROM clever_marts.dim_users "
                                      "WHERE is_archived GROUP BY 1 ORDER BY 1")
            assert archived == [("demo", 1), ("other", 1)]


def test_a_quarantined_district_record_on_a_first_sync_stays_with_its_district(
        warehouse_url, two_districts, tmp_path):
    districts, sim, dirs = two_districts
    (record,) = load_records(dirs["other"], "v3.0", "districts")
    del record["name"]  # guaranteed by Clever: validation quarantines it, and it has no clean version
    write_records(dirs["other"], "v3.0", "districts", [record])

    run = runs.start_run(warehouse_url, districts["other"], None)
    for endpoint in districts["other"].endpoints:
        pipeline.extract(warehouse_url, districts["other"], run, endpoint, sim.base_url, OTHER_TOKEN)
    runs.close_extraction(warehouse_url, run)
    validation.validate_run(warehouse_url, run, quarantine_threshold=0.05, quarantine_floor=10,
                            docs_dir=tmp_path / "docs")
    pipeline.approve(warehouse_url, run, threshold=0.2, floor=10)
    built = pipeline.build(WarehouseTarget.from_conninfo(warehouse_url), districts["other"])
    summary = summarize(warehouse_url, run, built["started_at"],
                                 extra={"dbt_test_warnings": built["warnings"]})
    text = format_summary(summary)
    assert "districts: " in " ".join(summary["quarantined"]) and "quarantined 1 record(s)" in text
    assert any("relationships_dim_users_district_id" in test for test in built["warnings"]), built["warnings"]
    assert "dbt test warning, district 'other'" in text
    assert query(warehouse_url, "SELECT count(*) FROM clever_marts.dim_districts WHERE district_slug = 'other'") \
        == [(0,)]
    assert query(warehouse_url, "SELECT count(*) > 100 FROM clever_marts.dim_users WHERE district_slug = 'other'") \
        == [(True,)]

    # The healthy district beside it syncs, archives and restores as always.
    demo = districts["demo"]
    land_and_build(warehouse_url, demo, sim.base_url, DEMO_TOKEN, validate=True, docs_dir=tmp_path / "docs")
    users = load_records(dirs["demo"], "v3.0", "users")
    write_records(dirs["demo"], "v3.0", "users", users[1:])
    land_and_build(warehouse_url, demo, sim.base_url, DEMO_TOKEN, validate=True, docs_dir=tmp_path / "docs")
    assert query(warehouse_url, "SELECT is_archived FROM clever_marts.dim_users WHERE clever_id = %s",
                 (users[0]["id"],)) == [(True,)]
    write_records(dirs["demo"], "v3.0", "users", users)
    land_and_build(warehouse_url, demo, sim.base_url, DEMO_TOKEN, validate=True, docs_dir=tmp_path / "docs")
    assert query(warehouse_url, "SELECT is_archived FROM clever_marts.dim_users WHERE clever_id = %s",
                 (users[0]["id"],)) == [(False,)]
    assert query(warehouse_url, "SELECT district_slug FROM clever_marts.dim_districts") == [("demo",)]


def test_a_failing_data_test_fails_only_its_district(warehouse_url, two_districts):
    districts, sim, _ = two_districts
    for slug in ("demo", "other"):
        land_and_build(warehouse_url, districts[slug], sim.base_url, token(slug))
    # Broken invariants in other's rows only: an active record with an archive time (a
    # singular test) and a record without its district (a generic not_null test).
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("""UPDATE clever_intermediate.int_state__users SET archived_at = now(), district_id = NULL
                        WHERE district_slug = 'other' AND clever_id = (SELECT min(clever_id)
                            FROM clever_intermediate.int_state__users WHERE district_slug = 'other')""")
    target = WarehouseTarget.from_conninfo(warehouse_url)
    with pytest.raises(DbtError, match=r"district 'other'") as failure:
        pipeline.build(target, districts["other"])
    assert "assert_marts_archived_at_matches_is_archived" in str(failure.value)
    assert "not_null_dim_users_district_id" in str(failure.value)
    built = pipeline.build(target, districts["demo"])  # demo's build tests demo's rows: it passes
    assert built["warnings"] == {}
