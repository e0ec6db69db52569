{# One row per person: the Clever user records that are one person (int_people), with
   every record's Clever ID and every role, so a teacher who is also a district admin
   (two records in v3.0, one record with two roles in v3.1) is one row and neither
   record is lost. Archived records stay in their person.
   A person of one record (every student, most staff) is that record's row as it is;
   only people of several records are aggregated, so a million students are not sorted
   into groups of one.
   Incremental per district: a build recomputes the people of the records versioned since
   its last (int_people.snapshot_updated_at) and each record's person before (its own ID
   when it was alone), every person of several records before and now with its records'
   own IDs, and every person whose app accounts changed; a person that no longer exists is written as a row of no
   record and deleted by the post-hook in the same transaction, so BI never sees it. #}
{{ config(materialized='incremental', unique_key=['district_slug', 'person_id'], incremental_strategy='delete+insert',
          on_schema_change='append_new_columns', pre_hook="{{ no_nested_loops_unless_keyed() }}",
          post_hook="delete from {{ this }} where record_count = 0 and {{ in_build_scope('district_slug') }}",
          meta={'indexes': [{'columns': ['district_slug', 'snapshot_updated_at']}]}) }}
{{ require_incremental_when_scoped() }}
with accounts as (
    select district_slug, person_id, array_agg(distinct app_user_id order by app_user_id) as app_user_ids
    from {{ ref('dim_user_matches') }}
    where {{ in_build_scope('district_slug') }}
    group by district_slug, person_id
),
{%- if is_incremental() %}

changed_records as (
    select p.district_slug, p.clever_id, p.person_id
    from ({{ versioned_since_covered(ref('int_people')) }}) as p
),

recompute as (
    select district_slug, person_id from changed_records
    union
    select district_slug, clever_id from changed_records
    union
    -- people of several records now, and each of their records' own ID (its person before
    -- or after, when a reviewer links a reissue or a group forms, nothing of it versioned)
    select district_slug, unnest(array[person_id, clever_id]) from {{ ref('int_people') }}
    where person_rule <> 'single_record' and {{ in_build_scope('district_slug') }}
    union
    -- people of several records before, and each of their records' own ID
    select district_slug, unnest(array[person_id] || clever_ids) from {{ this }}
    where record_count > 1 and {{ in_build_scope('district_slug') }}
    union
    select coalesce(a.district_slug, d.district_slug), coalesce(a.person_id, d.person_id)
    from accounts as a
    full join (
        select district_slug, person_id, app_user_ids from {{ this }}
        where app_user_ids <> '{}' and {{ in_build_scope('district_slug') }}
    ) as d on d.district_slug = a.district_slug and d.person_id = a.person_id
    where a.app_user_ids is distinct from d.app_user_ids
),
{%- endif %}

records as (
    select
        p.district_slug,
        p.person_id,
        p.person_rule,
        p.snapshot_updated_at,
        u.clever_id,
        u.roles,
        u.is_archived,
        u.email,
        u.first_name,
        u.last_name,
        u.first_seen_at
    from {{ ref('int_people') }} as p
    join {{ ref('dim_users') }} as u on u.district_slug = p.district_slug and u.clever_id = p.clever_id
    where {{ in_build_scope('p.district_slug') }}
    {%- if is_incremental() %}
      and (p.district_slug, p.person_id) in (select district_slug, person_id from recompute)
    {%- endif %}
),

several as (
    select * from records where person_rule <> 'single_record'
),

roles as (
    select district_slug, person_id, array_agg(distinct role order by role) as roles
    from several
    cross join lateral unnest(several.roles) as role
    group by district_slug, person_id
),

people as (
    select
        r.district_slug,
        r.person_id,
        max(r.first_name) filter (where r.clever_id = r.person_id) as first_name,
        max(r.last_name) filter (where r.clever_id = r.person_id) as last_name,
        max(r.email) filter (where r.clever_id = r.person_id) as email,
        array_agg(r.clever_id order by r.clever_id) as clever_ids,
        coalesce(array_agg(r.clever_id order by r.clever_id) filter (where not r.is_archived), '{}')
            as active_clever_ids,
        coalesce(ro.roles, '{}') as roles,
        count(*) as record_count,
        bool_and(r.is_archived) as is_archived,
        min(r.person_rule) as person_rule,
        min(r.first_seen_at) as first_seen_at,
        max(r.snapshot_updated_at) as snapshot_updated_at
    from several as r
    left join roles as ro on ro.district_slug = r.district_slug and ro.person_id = r.person_id
    group by r.district_slug, r.person_id, ro.roles
    union all
    -- roles of a user record are already distinct and sorted (stg_clever__users)
    select
        district_slug,
        person_id,
        first_name,
        last_name,
        email,
        array[clever_id],
        case when is_archived then '{}' else array[clever_id] end,
        roles,
        1::bigint,
        is_archived,
        person_rule,
        first_seen_at,
        snapshot_updated_at
    from records
    where person_rule = 'single_record'
)

select
    p.district_slug,
    p.person_id,
    p.first_name,
    p.last_name,
    p.email,
    p.clever_ids,
    p.active_clever_ids,
    p.roles,
    p.record_count,
    p.is_archived,
    p.person_rule,
    p.first_seen_at,
    coalesce(a.app_user_ids, '{}') as app_user_ids,
    p.snapshot_updated_at
from people as p
left join accounts as a on a.district_slug = p.district_slug and a.person_id = p.person_id
{%- if is_incremental() %}
union all
-- a person to recompute that no longer exists: a row of no record, deleted by the post-hook
select
    r.district_slug, r.person_id, null, null, null, '{}', '{}', '{}', 0, null, null, null, '{}', null
from recompute as r
where not exists (select 1 from people as p where p.district_slug = r.district_slug and p.person_id = r.person_id)
{%- endif %}
