{# Student-teacher associations: one row per (section, user, role), from the sections
   of the approved extraction. They follow their section: a section that stops being
   shared takes its associations with it, and brings them back when it returns. #}
with sections as (
    select district_slug, district_id, clever_id as section_id, sync_run_id, synced_at,
           primary_teacher_id, teacher_ids, student_ids
    from {{ ref('stg_clever__sections') }}
),

teachers as (
    select s.district_slug, s.district_id, s.section_id, s.sync_run_id, s.synced_at,
           t.user_id, 'teacher' as role, t.user_id = s.primary_teacher_id as is_primary_teacher
    from sections as s
    cross join lateral (
        select distinct user_id
        from unnest(s.teacher_ids || case when s.primary_teacher_id is null then '{}'::text[]
                                          else array[s.primary_teacher_id] end) as user_id
    ) as t
),

students as (
    select s.district_slug, s.district_id, s.section_id, s.sync_run_id, s.synced_at,
           st.user_id, 'student' as role, false as is_primary_teacher
    from sections as s
    cross join lateral (select distinct user_id from unnest(s.student_ids) as user_id) as st
)

select
    *,
    md5(is_primary_teacher::text) as record_hash
from (
    select * from teachers
    union all
    select * from students
) as enrollments
