with records as ({{ current_records('terms') }})
select
    district_slug,
    clever_id,
    district_id,
    sync_run_id,
    synced_at,
    record_hash,
    raw,
    {{ txt("raw ->> 'name'") }} as name,
    ({{ ts("raw ->> 'start_date'") }} at time zone 'UTC')::date as start_date,
    ({{ ts("raw ->> 'end_date'") }} at time zone 'UTC')::date as end_date
from records
