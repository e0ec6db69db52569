"""`make bench` at a small size, as a correctness smoke test: every scenario runs against
the real simulator and PostgreSQL, and each sync wrote exactly what it should. No timing
is asserted (speed is what the benchmark reports, on a machine chosen for it)."""

from __future__ import annotations

import json
import subprocess
import sys

from clever.paths import REPO_ROOT
from tests.conftest import _admin_url

SIZE = 300


def test_bench_runs_every_scenario_and_checks_what_each_sync_wrote(pg_server, tmp_path):
    results_file = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "clever_devkit.bench", "--size", str(SIZE), "--runner", "steps",
         "--naive-max-rows", "200",
         "--pg-url", _admin_url(pg_server), "--work-dir", str(tmp_path / "work"), "--results", str(results_file)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    results = json.loads(results_file.read_text())
    assert results["problems"] == []
    scenarios = results["scenarios"]
    assert list(scenarios) == ["floor", "naive", "full", "resync", "change", "events"]
    records = results["records"]
    assert records == sum(results["counts"][e] for e in ("districts", "schools", "users", "sections", "terms",
                                                         "courses"))
    assert scenarios["floor"]["detail"]["rows"] == records
    naive = scenarios["naive"]["detail"]
    assert naive["extrapolated"] and 0 < naive["measured_rows"] < records  # 200 of ~450
    for name in ("full", "resync", "change", "events"):
        landed = scenarios["events"]["detail"]["events_read"] if name == "events" else records  # events: changes only
        assert scenarios[name]["rows"] == landed
        assert scenarios[name]["detail"]["mode"] == ("events" if name == "events" else "full")
        assert scenarios[name]["detail"]["active_in_marts"]["users"] == results["counts"]["users"]
        assert set(scenarios[name]["detail"]["steps"]) >= {"extract", "validate", "approve", "build"}
        assert scenarios[name]["detail"]["dbt"]["seconds_by_type"]["snapshot"] > 0  # this sync's district build
        assert ("deploy" in scenarios[name]["detail"]["dbt"]) == (name == "full")  # a new warehouse deploys first
    assert scenarios["full"]["detail"]["history_rows"] > records  # every record and enrolment is new
    assert scenarios["resync"]["detail"]["history_rows"] == 0
    changes = results["changes"]
    assert changes["users_changed"] > 0 and changes["enrollments_removed"] > 0
    history = scenarios["change"]["detail"]["history"]
    assert history["users"] == {"changed": changes["users_changed"], "history_rows": changes["users_changed"]}
    assert history["enrollments"]["archived"] == changes["enrollments_removed"]
    # the same day applied by events, from the warehouse as the re-sync left it (the full sync's cursor)
    events = scenarios["events"]["detail"]
    assert events["history"] == history
    assert events["active_in_marts"] == scenarios["change"]["detail"]["active_in_marts"]
    assert events["events_posted"] == events["events_read"] == changes["users_changed"] + changes["sections_changed"]
    assert events["events"]["after"] == ""  # no events when the re-sync ran
    assert events["events"]["changes"] == {"users": {"updated": changes["users_changed"]},
                                           "sections": {"updated": changes["sections_changed"]}}
    for scenario in scenarios.values():
        assert scenario["processes"]["worker"]["peak_rss_mib"] > 10
        assert scenario["processes"]["simulator"]["peak_rss_mib"] > 10
        assert scenario["wall_seconds"] > 0
    assert set(results["summary"]["ratios"]) == {"full_over_floor", "naive_over_full", "change_over_full",
                                                 "events_over_full"}
    assert results["summary"]["targets_met"]["resync_history_rows"] is True
    assert "| 300 |" in completed.stdout  # the table row for docs/PERFORMANCE.md
    assert not (tmp_path / "work" / "data").exists() or not any((tmp_path / "work" / "data").iterdir())
