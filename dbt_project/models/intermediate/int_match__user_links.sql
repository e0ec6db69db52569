{{ config(materialized='view') }}
-- The user links today's rules make; snapshotted (snap_match__user_links).
select district_slug, clever_id, app_id, rule, confidence
from {{ ref('int_match__user_decisions') }}
where status = 'matched'
