-- The application's accounts with the keys the matching rules compare.
select
    app_user_id,
    app_district_id,
    app_school_id,
    role,
    first_name,
    last_name,
    email,
    sis_id,
    state_id,
    clever_id,
    {{ clever_id_key('clever_id') }} as clever_key,
    {{ email_key('email') }} as email_key,
    {{ id_key('sis_id') }} as sis_id_key,
    {{ id_key('state_id') }} as state_id_key,
    {{ person_name_key('first_name', 'last_name') }} as name_key
from {{ source('app', 'users') }}
