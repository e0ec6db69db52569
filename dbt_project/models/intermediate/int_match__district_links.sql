{{ config(materialized='view') }}
-- The district links today's rules make; snapshotted (snap_match__district_links) so the
-- first link made for a Clever district is kept when its evidence later changes.
select district_slug, clever_id, app_id, rule, confidence
from {{ ref('int_match__district_decisions') }}
where status = 'matched'
