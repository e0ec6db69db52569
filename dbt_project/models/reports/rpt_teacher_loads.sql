{# Current teaching load: per teacher, school and term, the active sections they are on
   (as primary or co-teacher) and their active students. #}
with teacher_enrollments as (
    select district_slug, section_id, user_id as teacher_id, is_primary_teacher
    from {{ ref('fct_enrollments') }}
    where role = 'teacher' and not is_archived
),

student_enrollments as (
    select district_slug, section_id, user_id as student_id
    from {{ ref('fct_enrollments') }}
    where role = 'student' and not is_archived
),

section_teachers as (
    select district_slug, section_id, count(*) as teacher_count
    from teacher_enrollments
    group by district_slug, section_id
)

select
    te.district_slug,
    te.teacher_id,
    concat_ws(' ', u.first_name, u.last_name) as teacher_name,
    u.is_archived as teacher_is_archived,
    s.school_id,
    s.school_name,
    s.term_id,
    s.term_name,
    s.term_start_date,
    s.term_end_date,
    count(distinct te.section_id) as sections,
    count(distinct te.section_id) filter (where te.is_primary_teacher) as primary_sections,
    count(distinct te.section_id) filter (where st.teacher_count > 1) as co_taught_sections,
    count(se.student_id) as student_seats,
    count(distinct se.student_id) as distinct_students
from teacher_enrollments as te
join {{ ref('int_reports__sections') }} as s
  on s.district_slug = te.district_slug and s.section_id = te.section_id and not s.is_archived
join section_teachers as st
  on st.district_slug = te.district_slug and st.section_id = te.section_id
left join student_enrollments as se
  on se.district_slug = te.district_slug and se.section_id = te.section_id
left join {{ ref('dim_users') }} as u
  on u.district_slug = te.district_slug and u.clever_id = te.teacher_id
group by te.district_slug, te.teacher_id, u.first_name, u.last_name, u.is_archived, s.school_id, s.school_name,
         s.term_id, s.term_name, s.term_start_date, s.term_end_date
