{# One row per person: the Clever user records that are one person (int_people), with
   every record's Clever ID and every role, so a teacher who is also a district admin
   (two records in v3.0, one record with two roles in v3.1) is one row and neither
   record is lost. Archived records stay in their person.
   A person of one record (every student, most staff) is that record's row as it is;
   only people of several records are aggregated, so a million students are not sorted
   into groups of one. #}
with records as (
    select
        p.district_slug,
        p.person_id,
        p.person_rule,
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
),

accounts as (
    select district_slug, person_id, array_agg(distinct app_user_id order by app_user_id) as app_user_ids
    from {{ ref('dim_user_matches') }}
    where {{ in_build_scope('district_slug') }}
    group by district_slug, person_id
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
        min(r.first_seen_at) as first_seen_at
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
        first_seen_at
    from records
    where person_rule = 'single_record'
)

select p.*, coalesce(a.app_user_ids, '{}') as app_user_ids
from people as p
left join accounts as a on a.district_slug = p.district_slug and a.person_id = p.person_id
