{# Every role each Clever user has: the roles Clever gives (source 'clever') and the
   roles admins granted in the application (app.role_grants, source 'app_grant'). A
   grant belongs to the application and survives every sync, also when Clever later
   archives the user; a grant to an account applies to each Clever record linked to it.
   Grants to accounts with no Clever link stay in app.role_grants only.
   Incremental per district, all rows of a user replaced together: a build recomputes the
   users versioned since its last (int_state__users.snapshot_updated_at), those in a
   person of several records before or now (person_id), and those with grants before or
   now; a user left with no row is written as a row of no source and deleted by the
   post-hook in the same transaction, so BI never sees it. #}
{{ config(materialized='incremental', unique_key=['district_slug', 'clever_id'], incremental_strategy='delete+insert',
          on_schema_change='append_new_columns', pre_hook="{{ no_nested_loops_unless_keyed() }}",
          post_hook="delete from {{ this }} where source is null and {{ in_build_scope('district_slug') }}",
          meta={'unique_key_groups_rows': true,
                'indexes': [{'columns': ['district_slug', 'snapshot_updated_at']}]}) }}
{{ require_incremental_when_scoped() }}
with direct as ({{ clever_user_districts() }}),

grants as (
    select g.*, d.district_slug, g.user_clever_id as clever_id
    from {{ source('app', 'role_grants') }} as g
    join direct as d on d.clever_id = g.user_clever_id
    union all
    select g.*, m.district_slug, m.clever_id
    from {{ source('app', 'role_grants') }} as g
    join {{ ref('dim_user_matches') }} as m on m.app_user_id = g.app_user_id
    where g.user_clever_id is null and {{ in_build_scope('m.district_slug') }}
),
{%- if is_incremental() %}

recompute as (
    select s.district_slug, s.clever_id from ({{ versioned_since_covered(ref('int_state__users')) }}) as s
    union
    select district_slug, clever_id from {{ ref('int_people') }}
    where person_id <> clever_id and {{ in_build_scope('district_slug') }}
    union
    select district_slug, clever_id from {{ this }}
    where (person_id <> clever_id or source = 'app_grant') and {{ in_build_scope('district_slug') }}
    union
    select district_slug, clever_id from grants where {{ in_build_scope('district_slug') }}
),
{%- endif %}

users as (
    select district_slug, clever_id, roles, is_archived, snapshot_updated_at
    from {{ ref('int_state__users') }}
    where {{ in_build_scope('district_slug') }}
    {%- if is_incremental() %}
      and (district_slug, clever_id) in (select district_slug, clever_id from recompute)
    {%- endif %}
),

user_roles as (

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
    u.is_archived as user_is_archived,
    u.snapshot_updated_at
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
    u.is_archived,
    u.snapshot_updated_at
from grants as g
join users as u on u.district_slug = g.district_slug and u.clever_id = g.clever_id
join {{ ref('int_people') }} as p on p.district_slug = g.district_slug and p.clever_id = g.clever_id
left join {{ ref('dim_school_matches') }} as sm
  on sm.district_slug = g.district_slug and sm.app_school_id = g.app_school_id
)

select * from user_roles
{%- if is_incremental() %}
union all
-- a user to recompute left with no role: a row of no source, deleted by the post-hook
select
    r.district_slug, r.clever_id, null, null, null, null, null, null, null, null, null, null
from recompute as r
where not exists (select 1 from user_roles as u where u.district_slug = r.district_slug and u.clever_id = r.clever_id)
{%- endif %}
