{# Which Clever user records are one person. In v3.0 a teacher who is also a district
   admin is two users with two IDs; in v3.1 one user with both roles. Records of a
   district with the same email and the same normalised name, whose roles are all
   staff-type (teacher, staff, district_admin), are one person. Students and contacts
   are never merged. person_id is the Clever ID of the group's first-seen record
   (teacher record first on a tie, then the lowest ID), so it stays put when a record
   joins later and equals the v3.1 user's ID (Clever keeps the teacher's). Archived
   records keep their person.
   Only staff-type records get their keys computed and only those with both keys go
   through the window (a few percent of a district); every other record is its own
   person, so a million students are neither normalised nor sorted.
   A user Clever reissued under a new ID whose pair is linked (int_reissue__lineage:
   confirmed by a reviewer) is the same person as the record it replaces, whatever its
   role: their people are merged ('reissued_id'), with the person_id of the first-seen
   record among them, so the account, progress and roles follow the person.
   Incremental per district: a build recomputes the records versioned since the table's
   latest snapshot_updated_at for the district (int_state__users), every staff-type record
   (a group is recomputed whole; a few percent of a district), and every record in or
   once in a linked reissue; a student's person depends on its own record alone, so a 1%
   day does not rewrite a million rows. #}
{{ config(materialized='incremental', unique_key=['district_slug', 'clever_id'], incremental_strategy='delete+insert',
          on_schema_change='append_new_columns', pre_hook="{{ no_nested_loops_unless_keyed() }}",
          meta={'indexes': [{'columns': ['district_slug', 'snapshot_updated_at']},
                            {'columns': ['district_slug', 'person_id']}]}) }}
{{ require_incremental_when_scoped() }}
{%- set staff_type = "cardinality(s.roles) > 0 and s.roles <@ array['district_admin', 'staff', 'teacher']" %}
with recursive users as (
    select
        s.district_slug,
        s.clever_id,
        s.roles,
        s.first_seen_at,
        s.email,
        s.first_name,
        s.last_name,
        s.snapshot_updated_at,
        {{ staff_type }} as is_staff_type
    from {{ ref('int_state__users') }} as s
    where {{ in_build_scope('s.district_slug') }}
    {%- if is_incremental() %}
      and (
          ({{ staff_type }})
          or (s.district_slug, s.clever_id) in (
              select district_slug, clever_id from ({{ versioned_since_covered(ref('int_state__users')) }}) as v
              union all
              select district_slug, clever_id from {{ ref('int_reissue__lineage') }}
              where data_type = 'users' and {{ in_build_scope('district_slug') }}
              union all
              select district_slug, lineage_id from {{ ref('int_reissue__lineage') }}
              where data_type = 'users' and {{ in_build_scope('district_slug') }}
              union all
              select district_slug, clever_id from {{ this }}
              where person_rule = 'reissued_id' and {{ in_build_scope('district_slug') }})
      )
    {%- endif %}
),

staff as (
    select
        district_slug,
        clever_id,
        roles,
        first_seen_at,
        {{ email_key('email') }} as email_key,
        {{ person_name_key('first_name', 'last_name') }} as name_key
    from users
    where is_staff_type
),

grouped as (
    select
        district_slug,
        clever_id,
        first_value(clever_id) over person_records as person_id,
        count(*) over person_records as person_record_count
    from staff
    where email_key is not null and name_key is not null
    window person_records as (
        partition by district_slug, email_key || '#' || name_key
        order by first_seen_at, 'teacher' = any(roles) desc, clever_id
        rows between unbounded preceding and unbounded following)
),

by_email_and_name as (
    select
        district_slug,
        clever_id,
        person_id,
        case when person_record_count > 1 then 'same_email_and_name' else 'single_record' end as person_rule
    from grouped
    union all
    select district_slug, clever_id, clever_id as person_id, 'single_record'
    from staff
    where email_key is null or name_key is null
    union all
    select district_slug, clever_id, clever_id as person_id, 'single_record'
    from users
    where not is_staff_type
),

-- linked reissues join the people of their records (a few rows: only linked users)
reissued as (
    select l.district_slug, l.clever_id, l.lineage_id, coalesce(g.person_id, l.clever_id) as person_id
    from {{ ref('int_reissue__lineage') }} as l
    left join grouped as g on g.district_slug = l.district_slug and g.clever_id = l.clever_id
    where l.data_type = 'users' and {{ in_build_scope('l.district_slug') }}
),

joined as (
    select r.district_slug, r.person_id as from_person, f.person_id as to_person
    from reissued as r
    join reissued as f on f.district_slug = r.district_slug and f.clever_id = r.lineage_id
    where r.person_id <> f.person_id
),

edges as (
    select district_slug, from_person, to_person from joined
    union
    select district_slug, to_person, from_person from joined
),

reach (district_slug, person_id, reached) as (
    select district_slug, from_person as person_id, from_person as reached from edges
    union
    select r.district_slug, r.person_id, e.to_person
    from reach as r
    join edges as e on e.district_slug = r.district_slug and e.from_person = r.reached
),

merged as (
    select distinct on (r.district_slug, r.person_id)
        r.district_slug,
        r.person_id,
        r.reached as merged_person_id
    from reach as r
    join users as u on u.district_slug = r.district_slug and u.clever_id = r.reached
    order by r.district_slug, r.person_id, u.first_seen_at, 'teacher' = any(u.roles) desc, r.reached
)

select
    p.district_slug,
    p.clever_id,
    coalesce(m.merged_person_id, p.person_id) as person_id,
    case when m.person_id is not null then 'reissued_id' else p.person_rule end as person_rule,
    u.snapshot_updated_at
from by_email_and_name as p
join users as u on u.district_slug = p.district_slug and u.clever_id = p.clever_id
left join merged as m on m.district_slug = p.district_slug and m.person_id = p.person_id
