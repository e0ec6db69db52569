{# Every role each Clever user has: the roles Clever gives (source 'clever') and the
   roles admins granted in the application (app.role_grants, source 'app_grant'). A
   grant belongs to the application and survives every sync, also when Clever later
   archives the user; a grant to an account applies to each Clever record linked to it.
   Grants to accounts with no Clever link stay in app.role_grants only. #}
with users as (
    select district_slug, clever_id, roles, is_archived from {{ ref('dim_users') }}
    where {{ in_build_scope('district_slug') }}
),

direct as ({{ clever_user_districts() }}),

grants as (
    select g.*, d.district_slug, g.user_clever_id as clever_id
    from {{ source('app', 'role_grants') }} as g
    join direct as d on d.clever_id = g.user_clever_id
    union all
    select g.*, m.district_slug, m.clever_id
    from {{ source('app', 'role_grants') }} as g
    join {{ ref('dim_user_matches') }} as m on m.app_user_id = g.app_user_id
    where g.user_clever_id is null and {{ in_build_scope('m.district_slug') }}
)

select
    u.district_slug,
    u.clever_id,
    p.person_id,
    r.role,
    'clever' as source,
    null::bigint as role_grant_id,
    null::bigint as scope_app_school_id,
    null::text as scope_school_id,
    null::text as granted_by,
    null::timestamptz as granted_at,
    u.is_archived as user_is_archived
from users as u
cross join lateral unnest(u.roles) as r (role)
join {{ ref('int_people') }} as p on p.district_slug = u.district_slug and p.clever_id = u.clever_id
union all
select
    g.district_slug,
    g.clever_id,
    p.person_id,
    g.role,
    'app_grant',
    g.role_grant_id,
    g.app_school_id,
    sm.clever_id as scope_school_id,
    g.granted_by,
    g.granted_at,
    u.is_archived
from grants as g
join users as u on u.district_slug = g.district_slug and u.clever_id = g.clever_id
join {{ ref('int_people') }} as p on p.district_slug = g.district_slug and p.clever_id = g.clever_id
left join {{ ref('dim_school_matches') }} as sm
  on sm.district_slug = g.district_slug and sm.app_school_id = g.app_school_id
