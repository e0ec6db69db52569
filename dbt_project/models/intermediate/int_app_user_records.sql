{# The Clever record that stands for each linked app account: the one it is linked to
   in dim_user_matches, and if several records of one person share the account (a teacher
   who is also a district admin), its student record, else the first linked. Progress
   and group membership of legacy accounts resolve through it. #}
{{ config(unique_key='app_user_id') }}
select distinct on (m.app_user_id)
    m.app_user_id,
    m.district_slug,
    m.clever_id,
    m.person_id
from {{ ref('dim_user_matches') }} as m
join {{ ref('dim_users') }} as u on u.district_slug = m.district_slug and u.clever_id = m.clever_id
where {{ in_build_scope('m.district_slug') }}
order by m.app_user_id, u.is_student desc, m.matched_since, m.clever_id
