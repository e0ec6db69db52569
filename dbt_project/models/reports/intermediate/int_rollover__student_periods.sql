{# Where each student was enrolled, per period: one row per (period, school, student) for
   every student on the roster of a section that ran in the period at that school. Archived
   enrollments count: a student dropped mid-year, or last year's rosters that Clever no
   longer shares, were still enrolled then. #}
select distinct
    sp.district_slug,
    sp.comparison,
    sp.period_key,
    sp.school_id,
    e.user_id as student_id
from {{ ref('int_rollover__section_periods') }} as sp
join {{ ref('fct_enrollments') }} as e
  on e.district_slug = sp.district_slug and e.section_id = sp.section_id and e.role = 'student'
