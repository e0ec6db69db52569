{# Which Clever user records are one person. In v3.0 a teacher who is also a district
   admin is two users with two IDs; in v3.1 one user with both roles. Records of a
   district with the same email and the same normalised name, whose roles are all
   staff-type (teacher, staff, district_admin), are one person. Students and contacts
   are never merged. person_id is the Clever ID of the group's first-seen record
   (teacher record first on a tie, then the lowest ID), so it stays put when a record
   joins later and equals the v3.1 user's ID (Clever keeps the teacher's). Archived
   records keep their person. #}
with users as (
    select
        district_slug,
        clever_id,
        roles,
        first_seen_at,
        {{ email_key('email') }} as email_key,
        {{ person_name_key('first_name', 'last_name') }} as name_key,
        cardinality(roles) > 0 and roles <@ array['district_admin', 'staff', 'teacher'] as is_staff_type
    from {{ ref('dim_users') }}
),

groupable as (
    select
        *,
        is_staff_type and email_key is not null and name_key is not null as can_group
    from users
),

grouped as (
    select
        district_slug,
        clever_id,
        case when can_group then first_value(clever_id) over person_records else clever_id end as person_id,
        case when can_group then count(*) over person_records else 1 end as person_record_count
    from groupable
    window person_records as (
        partition by district_slug, can_group, case when can_group then email_key || '#' || name_key
                                                    else clever_id end
        order by first_seen_at, 'teacher' = any (roles) desc, clever_id
        rows between unbounded preceding and unbounded following)
)

select
    district_slug,
    clever_id,
    person_id,
    case when person_record_count > 1 then 'same_email_and_name' else 'single_record' end as person_rule
from grouped
