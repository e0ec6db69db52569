{# Every section ever shared (active or archived) with the names and dates the
   dashboards show next to it: school, term (and its school year) and course. #}
select
    s.district_slug,
    s.clever_id as section_id,
    s.name as section_name,
    s.is_archived,
    s.school_id,
    sc.name as school_name,
    s.term_id,
    t.term_name,
    t.start_date as term_start_date,
    t.end_date as term_end_date,
    {{ school_year_label('t.school_year_start') }} as school_year,
    s.course_id,
    c.name as course_name,
    s.subject,
    s.grade as section_grade
from {{ ref('dim_sections') }} as s
left join {{ ref('dim_schools') }} as sc
  on sc.district_slug = s.district_slug and sc.clever_id = s.school_id
left join {{ ref('int_reports__terms') }} as t
  on t.district_slug = s.district_slug and t.term_id = s.term_id
left join {{ ref('dim_courses') }} as c
  on c.district_slug = s.district_slug and c.clever_id = s.course_id
where {{ in_build_scope('s.district_slug') }}
