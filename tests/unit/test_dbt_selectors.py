"""What a district's builds select (dbt_project/selectors.yml), resolved by dbt itself: an
events run's build between complete ones leaves out the data tests and the two reports
that cost a whole district's rows whatever changed; everything else is as complete."""

from __future__ import annotations

import json

from clever.dbt_runner import DBT_PROJECT_DIR, DISTRICT_BUILD_SELECTOR, EVENTS_BUILD_SELECTOR

WHOLE_DISTRICT_REPORTS = {"model.clever_warehouse.rpt_rollover",
                          "model.clever_warehouse.int_reports__match_unmatched"}


def selected(selector: str, tmp_path) -> set[str]:
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(["ls", "--selector", selector, "--output", "json", "--output-keys", "unique_id",
                                 "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
                                 "--target-path", str(tmp_path / selector), "--log-path", str(tmp_path / "logs"),
                                 "--quiet"])
    assert result.success, result.exception
    return {json.loads(line)["unique_id"] for line in result.result}


def test_an_events_build_leaves_out_the_data_tests_and_whole_district_reports_only(tmp_path):
    complete = selected(DISTRICT_BUILD_SELECTOR, tmp_path)
    events = selected(EVENTS_BUILD_SELECTOR, tmp_path)
    assert WHOLE_DISTRICT_REPORTS <= complete
    tests = {node for node in complete if node.startswith("test.")}
    assert tests and events == complete - tests - WHOLE_DISTRICT_REPORTS
    assert {"snapshot.clever_warehouse.snap_clever__users", "model.clever_warehouse.int_state__users",
            "model.clever_warehouse.dim_people"} <= events
