select
    district_slug,
    clever_id,
    district_id,
    sync_run_id,
    synced_at,
    record_hash,
    raw,
    {{ txt("raw ->> 'name'") }} as name,
    {{ txt("raw ->> 'number'") }} as number
from ({{ current_records('courses') }}) as records
