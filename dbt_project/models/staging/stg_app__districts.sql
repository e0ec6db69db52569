-- The application's districts with the keys the matching rules compare.
select
    app_district_id,
    name,
    {{ id_key('state') }} as state,
    nces_id,
    clever_id,
    {{ clever_id_key('clever_id') }} as clever_key,
    {{ id_key('nces_id') }} as nces_key,
    clever_staging.normalize_name(name) as name_key
from {{ source('app', 'districts') }}
