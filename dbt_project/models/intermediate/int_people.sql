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
   person, so a million students are neither normalised nor sorted. #}
with users as (
    select
        district_slug,
        clever_id,
        roles,
        first_seen_at,
        email,
        first_name,
        last_name,
        cardinality(roles) > 0 and roles <@ array['district_admin', 'staff', 'teacher'] as is_staff_type
    from {{ ref('dim_users') }}
    where {{ in_build_scope('district_slug') }}
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
)

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
