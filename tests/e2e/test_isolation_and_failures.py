"""Districts never affect one another, and a failed run archives nothing."""

from __future__ import annotations

import pytest

from clever_devkit.sample_district import generate
from clever_devkit.simulator import CleverSimulator
from tests.conftest import DEMO_TOKEN
from tests.e2e.conftest import make_airflow
from tests.helpers import load_records, write_records

pytestmark = pytest.mark.e2e

OTHER_TOKEN = "other-district-token-5e6f"


def mart_state(airflow, slug: str) -> dict[str, set[tuple[str, bool]]]:
    return {
        dim: set(airflow.query(
            f"SELECT clever_id, is_archived FROM clever_marts.dim_{dim} WHERE district_slug = %s", (slug,)))
        for dim in ("districts", "schools", "users", "sections", "terms", "courses")
    }


def test_two_districts_synced_alternately_keep_separate_histories(
        airflow_home, synced_warehouse_url, district_dir, tmp_path):
    other_dir = tmp_path / "other"
    generate(other_dir, seed=7, district_name="Other USD")
    with CleverSimulator({"demo": (DEMO_TOKEN, district_dir), "other": (OTHER_TOKEN, other_dir)}) as sim:
        airflow = make_airflow(airflow_home, synced_warehouse_url, tmp_path, sim,
                               {"demo": DEMO_TOKEN, "other": OTHER_TOKEN})
        # demo synced first (synced_warehouse_url), then other
        demo_first = mart_state(airflow, "demo")
        assert demo_first["users"] and not any(archived for _, archived in demo_first["users"])
        airflow.sync("other")
        assert mart_state(airflow, "demo") == demo_first
        other_before = mart_state(airflow, "other")
        assert other_before["users"] and not any(archived for _, archived in other_before["users"])

        users = load_records(district_dir, "v3.0", "users")
        dropped = users[0]["id"]
        write_records(district_dir, "v3.0", "users", users[1:])
        airflow.sync("demo")
        demo = mart_state(airflow, "demo")
        assert {cid for cid, archived in demo["users"] if archived} == {dropped}
        assert mart_state(airflow, "other") == other_before

        airflow.sync("other")  # the other district's run must not touch demo's archive
        assert mart_state(airflow, "demo") == demo
        assert mart_state(airflow, "other") == other_before
        ids = airflow.query("SELECT district_slug, district_id FROM clever_marts.dim_districts ORDER BY 1")
        assert [slug for slug, _ in ids] == ["demo", "other"] and ids[0][1] != ids[1][1]


def test_failed_extraction_archives_nothing_and_keeps_earlier_data(synced_airflow, simulator, district_dir):
    airflow = synced_airflow  # after a clean first sync
    before = mart_state(airflow, "demo")
    users = load_records(district_dir, "v3.0", "users")
    write_records(district_dir, "v3.0", "users", users[: len(users) // 2])  # would archive half the users
    simulator.set_faults(fail_endpoint="sections")
    output = airflow.sync(expect_success=False)
    assert "'sections'" in output and "'demo'" in output
    assert mart_state(airflow, "demo") == before
    runs = airflow.query("SELECT status FROM clever_landing.sync_runs ORDER BY sync_run_id")
    assert runs == [("completed",), ("failed",)]
    assert airflow.query("SELECT status FROM clever_landing.run_summaries ORDER BY sync_run_id") == [
        ("succeeded",), ("failed",)]
    assert airflow.scalar("SELECT count(*) FROM clever_landing.approved_extractions WHERE sync_run_id = 2") == 0


ENROLLMENTS = "SELECT section_id, user_id, role, is_archived FROM clever_marts.fct_enrollments ORDER BY 1, 2, 3"


def test_a_run_of_some_endpoints_archives_nothing_of_the_others(synced_airflow, district_dir):
    airflow = synced_airflow  # after a clean first sync
    before = mart_state(airflow, "demo")
    enrollments = airflow.query(ENROLLMENTS)
    users = load_records(district_dir, "v3.0", "users")
    sections = load_records(district_dir, "v3.0", "sections")
    write_records(district_dir, "v3.0", "users", users[1:])
    write_records(district_dir, "v3.0", "sections", sections[5:])  # not extracted by this run
    airflow.sync(conf={"endpoints": ["users"]})
    after = mart_state(airflow, "demo")
    assert {cid for cid, archived in after["users"] if archived} == {users[0]["id"]}
    assert {k: v for k, v in after.items() if k != "users"} == {k: v for k, v in before.items() if k != "users"}
    assert airflow.query(ENROLLMENTS) == enrollments, "associations follow the (untouched) sections"
    assert airflow.query("SELECT endpoint FROM clever_landing.approved_extractions WHERE sync_run_id = 2") == [
        ("users",)]
