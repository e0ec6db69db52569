{# Student-teacher associations: one row per (section, user, role), from the sections
   of the approved extraction. They follow their section: a section that stops being
   shared takes its associations with it, and brings them back when it returns.
   One lateral join per section (no CTE over the sections), so a filter on the section,
   such as the enrolment snapshot's changed sections, is applied before the rosters
   are expanded. #}
select
    s.district_slug,
    s.district_id,
    s.clever_id as section_id,
    s.sync_run_id,
    s.synced_at,
    m.user_id,
    m.role,
    m.is_primary_teacher,
    md5(m.is_primary_teacher::text) as record_hash
from {{ ref('stg_clever__sections') }} as s
cross join lateral (
    select t.user_id, 'teacher' as role, t.user_id = s.primary_teacher_id as is_primary_teacher
    from (
        select distinct user_id
        from unnest(s.teacher_ids || case when s.primary_teacher_id is null then '{}'::text[]
                                          else array[s.primary_teacher_id] end) as user_id
    ) as t
    union all
    select st.user_id, 'student', false
    from (select distinct user_id from unnest(s.student_ids) as user_id) as st
) as m
