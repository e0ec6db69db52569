-- The approved extraction each snapshot reads, per district and endpoint: the newest
-- run (approve refuses a run older than one already approved, so this is also the
-- latest approval).
select distinct on (district_slug, endpoint)
    district_slug,
    endpoint,
    sync_run_id,
    synced_at,
    approved_at
from {{ source('clever_landing', 'approved_extractions') }}
order by district_slug, endpoint, sync_run_id desc
