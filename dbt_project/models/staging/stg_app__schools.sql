-- The application's schools with the keys the matching rules compare.
select
    app_school_id,
    app_district_id,
    name,
    nces_id,
    state_id,
    sis_id,
    school_number,
    clever_id,
    {{ clever_id_key('clever_id') }} as clever_key,
    {{ id_key('nces_id') }} as nces_key,
    {{ id_key('state_id') }} as state_id_key,
    {{ id_key('sis_id') }} as sis_id_key,
    {{ id_key('school_number') }} as school_number_key,
    clever_staging.normalize_name(name) as name_key
from {{ source('app', 'schools') }}
