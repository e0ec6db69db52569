{# Active sections with more than one active teacher: who the primary teacher is and who
   co-teaches. Co-teachers are every teacher on the section except the primary one. #}
with teachers as (
    select e.district_slug, e.section_id, e.user_id as teacher_id, e.is_primary_teacher,
           concat_ws(' ', u.first_name, u.last_name) as teacher_name
    from {{ ref('fct_enrollments') }} as e
    left join {{ ref('dim_users') }} as u
      on u.district_slug = e.district_slug and u.clever_id = e.user_id
    where e.role = 'teacher' and not e.is_archived
),

section_teachers as (
    select
        district_slug,
        section_id,
        count(*) as teacher_count,
        max(teacher_id) filter (where is_primary_teacher) as primary_teacher_id,
        max(teacher_name) filter (where is_primary_teacher) as primary_teacher_name,
        array_agg(teacher_id order by teacher_id) filter (where not is_primary_teacher) as co_teacher_ids,
        array_agg(teacher_name order by teacher_id) filter (where not is_primary_teacher) as co_teacher_names
    from teachers
    group by district_slug, section_id
    having count(*) > 1
),

students as (
    select district_slug, section_id, count(*) as student_count
    from {{ ref('fct_enrollments') }}
    where role = 'student' and not is_archived
    group by district_slug, section_id
)

select
    s.district_slug,
    s.section_id,
    s.section_name,
    s.school_id,
    s.school_name,
    s.term_id,
    s.term_name,
    s.course_id,
    s.course_name,
    s.subject,
    s.section_grade,
    st.primary_teacher_id,
    st.primary_teacher_name,
    st.teacher_count,
    coalesce(st.co_teacher_ids, '{}') as co_teacher_ids,
    coalesce(st.co_teacher_names, '{}') as co_teacher_names,
    coalesce(stu.student_count, 0) as student_count
from {{ ref('int_reports__sections') }} as s
join section_teachers as st
  on st.district_slug = s.district_slug and st.section_id = s.section_id
left join students as stu
  on stu.district_slug = s.district_slug and stu.section_id = s.section_id
where not s.is_archived
