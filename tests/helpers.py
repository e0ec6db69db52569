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


DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"


def render_staging_model(model: str, records_sql: str = "select * from records_under_test") -> str:
    """A staging model's SQL as dbt would compile it, but reading ``current_records(...)``
    from ``records_sql`` (columns district_slug, district_id, clever_id, sync_run_id,
    synced_at, raw, record_hash), so it can run on any rows without a dbt build."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    macros = env.from_string((DBT_PROJECT / "macros" / "casts.sql").read_text()).module
    context = {name: value for name, value in vars(macros).items() if not name.startswith("_")}
    context.update(current_records=lambda endpoint: records_sql,
                   ref=lambda name: f"clever_staging.{name}", source=lambda schema, table: f"{schema}.{table}")
    sql = (DBT_PROJECT / "models" / "staging" / f"{model}.sql").read_text()
    return env.from_string(sql).render(**context)


def cast_functions_sql() -> str:
    """The DDL of dbt's on-run-start hook (create_cast_functions in casts.sql)."""
    import jinja2

    macros = jinja2.Environment().from_string((DBT_PROJECT / "macros" / "casts.sql").read_text()).module
    return str(macros.create_cast_functions())
