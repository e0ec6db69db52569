{# Student enrollments per school, section grade and term: the headline roster numbers.
   Grade is the section's grade (right for past terms too, unlike a student's current
   grade). Sections without a term are under term_id NULL. #}
select
    e.district_slug,
    s.school_id,
    s.school_name,
    s.term_id,
    s.term_name,
    s.term_start_date,
    s.term_end_date,
    s.school_year,
    s.section_grade,
    count(*) filter (where not e.is_archived) as active_enrollments,
    count(*) filter (where e.is_archived) as archived_enrollments,
    count(distinct e.user_id) filter (where not e.is_archived) as active_students,
    count(distinct e.user_id) as students_ever_enrolled,
    count(distinct e.section_id) filter (where not s.is_archived) as active_sections
from {{ ref('fct_enrollments') }} as e
join {{ ref('int_reports__sections') }} as s
  on s.district_slug = e.district_slug and s.section_id = e.section_id
where e.role = 'student'
group by e.district_slug, s.school_id, s.school_name, s.term_id, s.term_name, s.term_start_date,
         s.term_end_date, s.school_year, s.section_grade
