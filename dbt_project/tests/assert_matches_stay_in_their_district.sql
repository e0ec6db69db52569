-- Never across districts: every linked app school and account belongs to the app
-- district linked to its Clever record's district.
select 'school' as entity, m.district_slug, m.clever_id, m.app_school_id as app_id
from {{ ref('dim_school_matches') }} as m
join {{ ref('stg_app__schools') }} as a on a.app_school_id = m.app_school_id
where {{ in_build_scope('m.district_slug') }} and not exists (select 1 from {{ ref('dim_district_matches') }} as dm
                  where dm.district_slug = m.district_slug and dm.app_district_id = a.app_district_id)
union all
select 'user', m.district_slug, m.clever_id, m.app_user_id
from {{ ref('dim_user_matches') }} as m
join {{ ref('stg_app__users') }} as a on a.app_user_id = m.app_user_id
where {{ in_build_scope('m.district_slug') }} and not exists (select 1 from {{ ref('dim_district_matches') }} as dm
                  where dm.district_slug = m.district_slug and dm.app_district_id = a.app_district_id)
