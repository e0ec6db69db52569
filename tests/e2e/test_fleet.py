"""A fleet of districts through a real Airflow scheduler: the api-server, the scheduler
with the LocalExecutor and the DAG processor as separate processes, every district's DAG
triggered at once (what `make bench-fleet` runs, at a size a test can afford)."""

from __future__ import annotations

import itertools

import pytest

from clever_devkit import fleet

pytestmark = pytest.mark.e2e


def test_districts_triggered_at_once_all_sync_and_build_side_by_side(tmp_path):
    args = fleet.parse_args(["--districts", "3", "--size-mix", "1:150-400", "--days", "first", "unchanged",
                             "--alone-sample", "0", "--parallelism", "4", "--build-slots", "2",
                             "--work-dir", str(tmp_path / "fleet")])
    results = fleet.run(args)
    days = results["days"]
    assert set(days) == {"first", "unchanged"}
    for day in days.values():
        assert day["failed_runs"] == [], day["failed_runs"]
        assert day["task_instances"] == 3 * 6  # six tasks a district run
        assert day["median_task_gap_seconds"] is not None
        assert all(d["build_seconds"] for d in day["districts"].values())
    assert results["airflow_overhead_per_task_seconds"] > 0
    assert all(d["history_rows"] > 0 for d in days["first"]["districts"].values())
    assert all(d["history_rows"] == 0 for d in days["unchanged"]["districts"].values())
    # Two build slots: some builds of different districts ran at the same time.
    builds = sorted((d["build_started_at"], d["build_started_at"] + d["build_seconds"])
                    for d in days["unchanged"]["districts"].values())
    assert any(later_start < earlier_end for (_, earlier_end), (later_start, _) in itertools.pairwise(builds))
    peaks = results["summary"]["peak_rss_mib"]
    assert {"scheduler", "dag-processor", "api-server", "task", "postgres"} <= set(peaks)
