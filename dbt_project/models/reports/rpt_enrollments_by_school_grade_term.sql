{# Student enrollments per school, section grade and term: the headline roster numbers.
   Grade is the section's grade (right for past terms too, unlike a student's current
   grade). Sections without a term are under term_id NULL. #}
with enrollments as (
    select district_slug, section_id, user_id, is_archived
    from {{ ref('fct_enrollments') }}
    where role = 'student'
),

sections as (
    select district_slug, clever_id as section_id, school_id, term_id, grade, is_archived
    from {{ ref('dim_sections') }}
),

terms as (
    select * from {{ ref('int_reports__terms') }}
)

select
    e.district_slug,
    s.school_id,
    sc.name as school_name,
    s.term_id,
    t.term_name,
    t.start_date as term_start_date,
    t.end_date as term_end_date,
    {{ school_year_label('t.school_year_start') }} as school_year,
    s.grade as section_grade,
    count(*) filter (where not e.is_archived) as active_enrollments,
    count(*) filter (where e.is_archived) as archived_enrollments,
    count(distinct e.user_id) filter (where not e.is_archived) as active_students,
    count(distinct e.user_id) as students_ever_enrolled,
    count(distinct e.section_id) filter (where not s.is_archived) as active_sections
from enrollments as e
join sections as s
  on s.district_slug = e.district_slug and s.section_id = e.section_id
left join terms as t
  on t.district_slug = s.district_slug and t.term_id = s.term_id
left join {{ ref('dim_schools') }} as sc
  on sc.district_slug = s.district_slug and sc.clever_id = s.school_id
group by e.district_slug, s.school_id, sc.name, s.term_id, t.term_name, t.start_date, t.end_date,
         t.school_year_start, s.grade
