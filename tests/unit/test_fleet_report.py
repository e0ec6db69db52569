"""The fleet bench's alone comparison: where a build's extra seconds went, from dbt's
run_results.json, and a report that survives a failed comparison."""

from __future__ import annotations

import json

from clever_devkit import fleet


def _results(path, started, nodes):
    """A run_results.json: dbt started at second ``started``; nodes are (name, start, end)."""
    def stamp(second):
        return f"2026-12-07T02:40:{second:09.6f}Z"

    body = {"metadata": {"invocation_started_at": stamp(started), "generated_at": stamp(max(e for *_, e in nodes))},
            "results": [{"unique_id": f"model.clever_warehouse.{name}", "execution_time": end - start,
                         "timing": [{"name": "execute", "started_at": stamp(start), "completed_at": stamp(end)}]}
                        for name, start, end in nodes]}
    path.write_text(json.dumps(body))
    return path


def test_phase_difference_names_the_phase_and_nodes_that_cost_more(tmp_path):
    fleet_build = fleet.build_phases(_results(tmp_path / "fleet.json", 0, [("snap_users", 2, 9), ("dim", 9, 10)]))
    alone_build = fleet.build_phases(_results(tmp_path / "alone.json", 0, [("snap_users", 2, 5), ("dim", 5, 6)]))
    assert fleet_build["before_first_node"] == 2 and fleet_build["nodes_wall"] == 8
    difference = fleet.phase_difference(fleet_build, alone_build)
    assert difference["dbt_seconds"] == 4
    assert difference["before_first_node"] == 0 and difference["nodes_wall"] == 4
    assert next(iter(difference["nodes"])) == "snap_users" and difference["nodes"]["snap_users"] == 4


def test_report_lists_a_failed_comparison_and_the_difference_of_the_others():
    results = {"districts": 2, "students": 700, "settings": {"executor": "local", "parallelism": 4}, "days": {},
               "alone": [{"slug": "d1", "students": 300, "ratio": None, "error": "boom"},
                         {"slug": "d2", "students": 400, "fleet_day_build_seconds": 20.0,
                          "quiet_fleet_build_seconds": 12.0, "alone_build_seconds": 10.0, "ratio": 1.2,
                          "difference": {"dbt_seconds": 2.0, "before_first_node": 0.5, "nodes_wall": 1.5,
                                         "after_last_node": 0.0, "nodes": {"snap_users": 1.0}}}],
               "summary": {"peak_rss_mib": {}, "targets_met": {}}}
    report = fleet.format_report(results)
    assert "d1 (300 students): failed" in report
    assert "before the first node +0.5s" in report and "snap_users +1.0s" in report
