{{ config(pre_hook=no_nested_loops()) }}
{# One decision per Clever user that any rule finds an app account for, among the
   accounts of the app district its Clever district is linked to: never across
   districts. Rules: clever_id; sis_id and state_id for the same role (a student's
   SIS ID never matches a teacher's); email (case-insensitive); name_school (normalised
   first and last name, same role, at a school both records have: the app account's
   school through dim_school_matches). The records of one person (int_people) may share an
   account. Clever users are every user ever seen, archived ones included, so a student
   archived today keeps being matched. #}
with rules as (
    select district_slug, rule, priority, confidence
    from {{ ref('stg_clever__match_rules') }}
    where entity = 'users' and {{ in_build_scope('district_slug') }}
),

users as (
    select
        u.district_slug,
        u.clever_id,
        p.person_id,
        {{ email_key('u.email') }} as email_key,
        {{ person_name_key('u.first_name', 'u.last_name') }} as name_key,
        {{ id_key('u.student_sis_id') }} as student_sis_id,
        {{ id_key('u.teacher_sis_id') }} as teacher_sis_id,
        {{ id_key('u.staff_id') }} as staff_id,
        {{ id_key('u.contact_sis_id') }} as contact_sis_id,
        {{ id_key('u.student_state_id') }} as student_state_id,
        {{ id_key('u.teacher_state_id') }} as teacher_state_id,
        u.student_school_ids || u.student_school_id as student_schools,
        u.teacher_school_ids || u.teacher_school_id as teacher_schools,
        u.staff_school_ids as staff_schools
    from {{ ref('dim_users') }} as u
    join {{ ref('int_people') }} as p on p.district_slug = u.district_slug and p.clever_id = u.clever_id
    where {{ in_build_scope('u.district_slug') }}
),

clever_keys as (
    select district_slug, clever_id, person_id, 'clever_id' as rule, null::text as role, clever_id as key
    from users
    union all
    select district_slug, clever_id, person_id, 'sis_id', k.role, k.key
    from users
    cross join lateral (values ('student', student_sis_id), ('teacher', teacher_sis_id),
                               ('staff', staff_id), ('contact', contact_sis_id)) as k (role, key)
    where k.key is not null
    union all
    select district_slug, clever_id, person_id, 'state_id', k.role, k.key
    from users
    cross join lateral (values ('student', student_state_id), ('teacher', teacher_state_id)) as k (role, key)
    where k.key is not null
    union all
    select district_slug, clever_id, person_id, 'email', null, email_key
    from users
    where email_key is not null
    union all
    select u.district_slug, u.clever_id, u.person_id, 'name_school', s.role, u.name_key || '|' || s.school_id
    from users as u
    cross join lateral (
        select 'student' as role, unnest(u.student_schools) as school_id
        union
        select 'teacher', unnest(u.teacher_schools)
        union
        select 'staff', unnest(u.staff_schools)
    ) as s
    where u.name_key is not null and s.school_id is not null
),

app as ({{ in_linked_district('stg_app__users') }}),

app_keys as (
    select district_slug, app_user_id as app_id, role, 'clever_id' as rule, clever_key as key
    from app where clever_key is not null
    union all
    select district_slug, app_user_id, role, 'sis_id', sis_id_key from app where sis_id_key is not null
    union all
    select district_slug, app_user_id, role, 'state_id', state_id_key from app where state_id_key is not null
    union all
    select district_slug, app_user_id, role, 'email', email_key from app where email_key is not null
    union all
    select a.district_slug, a.app_user_id, a.role, 'name_school', a.name_key || '|' || sm.clever_id
    from app as a
    join {{ ref('dim_school_matches') }} as sm
      on sm.district_slug = a.district_slug and sm.app_school_id = a.app_school_id
    where a.name_key is not null and {{ in_build_scope('sm.district_slug') }}
),

candidates as (
    select ck.district_slug, ck.clever_id, ck.person_id as person_key, ak.app_id, r.rule, r.priority, r.confidence
    from clever_keys as ck
    join rules as r on r.district_slug = ck.district_slug and r.rule = ck.rule
    join app_keys as ak
      on ak.district_slug = ck.district_slug and ak.rule = ck.rule and ak.key = ck.key
     and (ck.role is null or ck.role = ak.role)
),

{{ match_decision_ctes('candidates') }}

select * from decisions
