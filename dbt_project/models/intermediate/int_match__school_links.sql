{{ config(materialized='view') }}
-- The school links today's rules make; snapshotted (snap_match__school_links).
select district_slug, clever_id, app_id, rule, confidence
from {{ ref('int_match__school_decisions') }}
where status = 'matched'
