"""Landing retention: delete the raw rows of older runs once nothing reads them.

``clever_landing`` keeps every record of every run (1.4 million rows a day for a district
of a million students). History lives in the snapshots, so an older run's rows are
needed only while one of these holds, and are kept while it does, whatever their age:

- they are the **current approved extraction** of their endpoint: the staging views read
  it, and the next validation compares with it (its baseline); for an events district
  (clever.events), its full extraction and every events run whose changes the staging
  views read over it;
- the current extraction of another endpoint was **validated against them** (its
  ``reference_runs``): the next validation works out what has gone from them since;
- they are the **last clean version of a record quarantined** now, which the staging
  views read in its place (``stg_clever__carried_records``, the same macro as theirs);
- their run is **still extracting**, or younger than ``landing_retention_days`` (an
  events run's events too: the next run resumes from a failed one's).

Everything else of the district's runs is deleted, one extraction (run and endpoint) at
a time, each in its own transaction, and the extraction is marked ``pruned_at`` with the
number of rows deleted. Run tracking, quarantine, validation results and summaries are
kept: they are small, and they are the audit trail. Deleting is safe to repeat: a
record that was a stand-in and is clean again is deleted by a later prune.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
from psycopg import sql

from clever import runs
from clever.warehouse import ensure_landing_schema, landing_table

log = logging.getLogger(__name__)

# Built by dbt's staging layer from the macro the staging views read through; it depends
# on stg_clever__current_extractions, which the query below uses too.
CARRIED_RECORDS_VIEW = ("clever_staging", "stg_clever__carried_records")

_PRUNABLE_EXTRACTIONS = """
WITH district_runs AS (
    SELECT sync_run_id, status, started_at FROM clever_landing.sync_runs WHERE district_slug = %(district)s
),
kept AS (
    SELECT endpoint, sync_run_id FROM clever_staging.stg_clever__current_extractions
    WHERE district_slug = %(district)s
    UNION
    SELECT endpoint, base_run_id FROM clever_staging.stg_clever__current_extractions
    WHERE district_slug = %(district)s
    UNION
    SELECT DISTINCT endpoint, sync_run_id FROM clever_landing.applied_changes WHERE district_slug = %(district)s
    UNION
    SELECT e.endpoint, e.sync_run_id FROM clever_landing.endpoint_runs AS e JOIN district_runs AS r USING (sync_run_id)
    WHERE r.status = 'started' OR r.started_at > clock_timestamp() - make_interval(days => %(days)s)
),
referenced AS (
    SELECT ref.key AS endpoint, (ref.value #>> '{}')::bigint AS sync_run_id
    FROM kept AS k
    JOIN clever_landing.validated_extractions AS v USING (endpoint, sync_run_id)
    CROSS JOIN LATERAL jsonb_each(v.reference_runs) AS ref
    WHERE jsonb_typeof(ref.value) = 'number'
)
SELECT e.endpoint, e.sync_run_id FROM clever_landing.endpoint_runs AS e JOIN district_runs AS r USING (sync_run_id)
WHERE coalesce(e.pruned_rows, 0) < e.row_count
  AND NOT EXISTS (SELECT 1 FROM kept AS k WHERE k.endpoint = e.endpoint AND k.sync_run_id = e.sync_run_id)
  AND NOT EXISTS (SELECT 1 FROM referenced AS f WHERE f.endpoint = e.endpoint AND f.sync_run_id = e.sync_run_id)
ORDER BY e.sync_run_id, e.endpoint
"""


@dataclass(frozen=True)
class PrunedExtraction:
    endpoint: str
    sync_run_id: int
    rows: int


def prune_landing(conninfo: str, district_slug: str, keep_days: int | None) -> list[PrunedExtraction]:
    """Delete the district's landing rows that nothing reads any more (module doc);
    ``keep_days`` None keeps everything."""
    if keep_days is None:
        log.info("district %s: landing retention is off (landing_retention_days: null)", district_slug)
        return []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ensure_landing_schema(conn)
        if conn.execute("SELECT to_regclass(%s)", (".".join(CARRIED_RECORDS_VIEW),)).fetchone()[0] is None:
            # Without the view the stand-ins are unknown; it exists after the first dbt build.
            log.warning("district %s: no landing rows pruned: %s.%s is not built yet",
                        district_slug, *CARRIED_RECORDS_VIEW)
            return []
        candidates = conn.execute(_PRUNABLE_EXTRACTIONS, {"district": district_slug, "days": keep_days}).fetchall()
        pruned = [p for endpoint, run in candidates
                  if (p := _prune_extraction(conn, district_slug, endpoint, run)).rows]
    total = sum(p.rows for p in pruned)
    log.info("district %s: pruned %d landing rows of %d extractions older than %d days", district_slug, total,
             len(pruned), keep_days)
    return pruned


def _prune_extraction(conn: psycopg.Connection, district_slug: str, endpoint: str,
                      sync_run_id: int) -> PrunedExtraction:
    # An endpoint without staging (resources) has no stand-ins in the view: all its rows go.
    delete = sql.SQL("""DELETE FROM {landing} AS l WHERE l.sync_run_id = %(run)s
                        AND NOT EXISTS (SELECT 1 FROM {view} AS c WHERE c.district_slug = %(district)s
                                        AND c.endpoint = %(endpoint)s
                                        AND c.sync_run_id = l.sync_run_id AND c.clever_id = l.clever_id)""").format(
        landing=landing_table(endpoint), view=sql.Identifier(*CARRIED_RECORDS_VIEW))
    with conn.transaction():
        rows = conn.execute(delete, {"run": sync_run_id, "endpoint": endpoint, "district": district_slug}).rowcount
        if rows:
            runs.endpoint_pruned(conn, sync_run_id, endpoint, rows)
    log.info("run %d, %s: %d landing rows pruned", sync_run_id, endpoint, rows)
    return PrunedExtraction(endpoint, sync_run_id, rows)
