"""Small helpers shared by tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def load_records(district_dir: Path, api_version: str, endpoint: str) -> list[dict[str, Any]]:
    """The records a simulator serves for an endpoint, sorted by id as Clever sorts them."""
    path = district_dir / api_version / f"{endpoint}.json"
    if not path.exists():
        return []
    return sorted(json.loads(path.read_text(encoding="utf-8")), key=lambda r: r["id"])


def write_records(district_dir: Path, api_version: str, endpoint: str, records: list[dict[str, Any]]) -> None:
    path = district_dir / api_version / f"{endpoint}.json"
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(staging, path)  # a new inode: the simulator cannot miss the change


def land_and_build(conninfo: str, district, base_url: str, token: str) -> dict[str, Any]:
    """Extract every endpoint of ``district`` (a DistrictConfig), approve the run and
    build, with the pipeline's own steps in this process: for integration tests that need
    a built warehouse but not Airflow. It skips the Great Expectations gate (the sample
    data passes it; tests/integration/test_validation.py covers it) to keep them quick."""
    from clever import pipeline
    from clever.connections import WarehouseTarget

    run_id = pipeline.start_run(conninfo, district, None)
    for endpoint in district.endpoints:
        pipeline.extract(conninfo, district, run_id, endpoint, base_url, token)
    pipeline.close_extraction(conninfo, run_id)
    pipeline.approve(conninfo, run_id, threshold=district.mass_archive_threshold, floor=district.mass_archive_floor)
    return pipeline.build(WarehouseTarget.from_conninfo(conninfo), district=district)
