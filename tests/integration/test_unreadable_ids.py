"""A record whose Clever id can't be read as Clever sends it (a number, or no id at all)
never makes the record it stands for look gone: nothing is archived because of it."""

from __future__ import annotations

import psycopg
import pytest

from clever import pipeline, runs
from clever.client import CleverClient
from clever.config import get_district
from clever.connections import WarehouseTarget
from clever.extract import extract_endpoint
from clever.guard import MassArchiveBlocked
from clever.runs import start_sync_run
from clever.validation import validate_run
from clever.warehouse import ensure_landing_schema
from tests.conftest import DEMO_TOKEN
from tests.helpers import Hostile, land_and_build, load_records, send_json

NUMERIC_ID_RULE = "guaranteed field id is present, not null and a JSON string"


def test_a_numeric_id_is_landed_as_its_text(warehouse_url):
    """Extraction keeps the id a number stands for; only a missing or non-scalar id is NULL."""
    records = [{"id": 1234567, "name": "n"}, {"id": "5e0000000000000000000001"}, {"id": None}, {"id": {"x": 1}}]

    server = Hostile(lambda request: send_json(request, {"data": [{"data": r} for r in records], "links": []}))
    try:
        with psycopg.connect(warehouse_url, autocommit=True) as conn, CleverClient(
                server.base_url, DEMO_TOKEN, district="demo") as client:
            ensure_landing_schema(conn)
            run = start_sync_run(conn, "demo", "v3.0", ["terms"])
            extract_endpoint(conn, client, run, "terms")
            landed = conn.execute("SELECT clever_id, raw -> 'id' FROM clever_landing.terms").fetchall()
    finally:
        server.close()
    assert sorted(landed, key=repr) == sorted([("1234567", 1234567), ("5e0000000000000000000001",
                                               "5e0000000000000000000001"), (None, None), (None, {"x": 1})], key=repr)


def _active_users(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute(
            "SELECT clever_id FROM clever_snapshots.snap_clever__users WHERE dbt_valid_to IS NULL "
            "AND dbt_is_deleted = 'False'")}


def _landed_run(url: str, district, base_url: str, rewrite: str, params: tuple) -> int:
    """A run of every endpoint, with one landed user rewritten as extraction would land a
    hostile answer (``rewrite`` is an UPDATE's SET and WHERE on clever_landing.users)."""
    run_id = runs.start_run(url, district, None)
    for endpoint in district.endpoints:
        pipeline.extract(url, district, run_id, endpoint, base_url, DEMO_TOKEN)
    assert runs.close_extraction(url, run_id) == "completed"
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute(f"UPDATE clever_landing.users SET {rewrite} AND sync_run_id = %s",
                            (*params, run_id)).rowcount == 1
    return run_id


def test_an_unreadable_id_never_archives_the_record_it_stands_for(warehouse_url, simulator, district_dir, tmp_path):
    url, district = warehouse_url, get_district("demo")
    users = load_records(district_dir, "v3.0", "users")
    student = next(u for u in users if "student" in u["roles"])["id"]
    # A teacher whose Clever id has only decimal digits, so that it can come as a JSON number.
    teacher, digits = next(u for u in users if "teacher" in u["roles"])["id"], "123456789012345678901234"
    for path in (district_dir / "v3.0").glob("*.json"):
        path.write_text(path.read_text(encoding="utf-8").replace(teacher, digits), encoding="utf-8")
    land_and_build(url, district, simulator.base_url, DEMO_TOKEN, validate=True, docs_dir=tmp_path / "d1")
    everyone = _active_users(url)
    assert digits in everyone

    # The teacher's id comes as a number: extraction lands its text as the id.
    numeric = _landed_run(url, district, simulator.base_url,
                          f"raw = jsonb_set(raw, '{{id}}', '{digits}') WHERE clever_id = %s", (digits,))
    summary = validate_run(url, numeric, docs_dir=tmp_path / "d2")
    assert summary["quarantined"] == {"users": 1}
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT clever_id, rule FROM clever_landing.quarantine WHERE sync_run_id = %s",
                            (numeric,)).fetchall() == [(digits, NUMERIC_ID_RULE)]
    pipeline.approve(url, numeric, threshold=district.mass_archive_threshold, floor=district.mass_archive_floor)
    pipeline.build(WarehouseTarget.from_conninfo(url), district)
    assert _active_users(url) == everyone, "the teacher keeps the last clean version; nobody is archived"

    # The student's record comes without an id: it could be anyone, so the run archives nothing.
    unnamed = _landed_run(url, district, simulator.base_url, "raw = raw - 'id', clever_id = NULL WHERE clever_id = %s",
                          (student,))
    assert validate_run(url, unnamed, docs_dir=tmp_path / "d3")["quarantined"] == {"users": 1}
    with pytest.raises(MassArchiveBlocked, match=r"users: would archive 1 of \d+ active .*1 record\(s\) of this run "
                                                 "have no readable Clever id") as held:
        pipeline.approve(url, unnamed, threshold=district.mass_archive_threshold,
                         floor=district.mass_archive_floor)
    assert "'demo'" in str(held.value) and "allow_mass_archive=true" in str(held.value)
    pipeline.build(WarehouseTarget.from_conninfo(url), district)
    assert _active_users(url) == everyone
