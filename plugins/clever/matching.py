"""Hands each district's matching settings to dbt.

The dbt build covers every district at once, and each district may order its matching
rules differently (config/districts.yml ``matching:``). Rather than passing every
district's settings as dbt vars on every build, each district's sync writes its own
settings to ``clever_landing.match_settings`` in its build step, under the build lock;
the matching models join them like any other table. So the settings in effect sit in
the warehouse beside the matches they produced, a manual ``dbt build`` reproduces the
same result, and a district that left the config keeps its last settings.
"""

from __future__ import annotations

import json

import psycopg

from clever.config import DistrictConfig


def write_match_settings(conn: psycopg.Connection, district: DistrictConfig) -> None:
    """Store the district's rule order, confidences and state, and the data types whose
    reissued records it links without review (a no-op if unchanged)."""
    conn.execute(
        """INSERT INTO clever_landing.match_settings (district_slug, state, rules, link_reissued_ids_automatically)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (district_slug) DO UPDATE
               SET state = EXCLUDED.state, rules = EXCLUDED.rules,
                   link_reissued_ids_automatically = EXCLUDED.link_reissued_ids_automatically,
                   written_at = clock_timestamp()
               WHERE match_settings.state IS DISTINCT FROM EXCLUDED.state
                  OR match_settings.rules IS DISTINCT FROM EXCLUDED.rules
                  OR match_settings.link_reissued_ids_automatically
                     IS DISTINCT FROM EXCLUDED.link_reissued_ids_automatically""",
        (district.slug, district.matching.state, json.dumps(district.matching.as_settings()),
         list(district.link_reissued_ids_automatically)),
    )
