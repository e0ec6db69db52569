-- The approved extraction each snapshot reads, per district and endpoint.
select distinct on (district_slug, endpoint)
    district_slug,
    endpoint,
    sync_run_id,
    synced_at,
    approved_at
from {{ source('clever_landing', 'approved_extractions') }}
order by district_slug, endpoint, approved_at desc, sync_run_id desc
