with records as ({{ current_records('districts') }})
select
    district_slug,
    clever_id,
    clever_id as district_id,
    sync_run_id,
    synced_at,
    record_hash,
    raw,
    raw ->> 'name' as name,
    {{ txt("raw ->> 'nces_id'") }} as nces_id,
    {{ txt("raw ->> 'mdr_number'") }} as mdr_number,
    {{ txt("raw ->> 'sis_type'") }} as sis_type,
    {{ txt("raw ->> 'state'") }} as sync_state,
    {{ txt("raw ->> 'portal_url'") }} as portal_url,
    clever_staging.try_date(raw ->> 'launch_date', 'YYYY-MM-DD') as launch_date,
    {{ ts("raw ->> 'last_sync'") }} as clever_last_sync,
    {{ text_array("raw -> 'login_methods'") }} as login_methods,
    {{ txt("raw #>> '{district_contact,email}'") }} as contact_email,
    {{ txt("raw #>> '{district_contact,name,first}'") }} as contact_first_name,
    {{ txt("raw #>> '{district_contact,name,last}'") }} as contact_last_name,
    {{ txt("raw #>> '{district_contact,title}'") }} as contact_title
from records
