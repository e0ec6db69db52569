"""The staging models' SQL run on chosen records in real PostgreSQL, without a dbt build:
each model is rendered as dbt compiles it, reading its records from a temporary table."""

from __future__ import annotations

import json
from datetime import date

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers import cast_functions_sql, render_staging_model


@pytest.fixture
def conn(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True, row_factory=dict_row) as connection:
        connection.execute(cast_functions_sql())
        yield connection


def stage(conn, model: str, records: list[dict]) -> dict[str, dict]:
    """Rows of ``model`` for ``records`` (as Clever returns them), by clever_id."""
    conn.execute("DROP TABLE IF EXISTS records_under_test")
    conn.execute("""CREATE TEMP TABLE records_under_test AS
                    SELECT 'demo'::text AS district_slug, r ->> 'district' AS district_id, r ->> 'id' AS clever_id,
                           1::bigint AS sync_run_id, now() AS synced_at, r AS raw, md5(r::text) AS record_hash
                    FROM jsonb_array_elements(%s::jsonb) AS r""", (json.dumps(records),))
    return {row["clever_id"]: row for row in conn.execute(render_staging_model(model)).fetchall()}


TERM_DATES = {
    "date": ("2025-08-13", date(2025, 8, 13)),
    "utc_midnight": ("2026-01-05T00:00:00.000Z", date(2026, 1, 5)),
    "late_evening_with_offset": ("2026-05-29T23:30:00-05:00", date(2026, 5, 29)),  # the date as written
    "not_a_date": ("2026-02-30", None),
    "empty": ("", None),
    "garbage": ("soon", None),
}


@pytest.mark.parametrize("time_zone", ["UTC", "Pacific/Kiritimati", "America/Los_Angeles", "Asia/Tokyo"])
def test_term_dates_are_the_dates_clever_wrote_whatever_the_session_time_zone(conn, time_zone):
    conn.execute(f"SET TIME ZONE '{time_zone}'")
    terms = [{"id": case, "district": "d1", "name": case, "start_date": text, "end_date": text}
             for case, (text, _) in TERM_DATES.items()]
    rows = stage(conn, "stg_clever__terms", terms)
    assert {case: (row["start_date"], row["end_date"]) for case, row in rows.items()} == {
        case: (expected, expected) for case, (_, expected) in TERM_DATES.items()}
