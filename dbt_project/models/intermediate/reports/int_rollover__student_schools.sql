{# Where each student was enrolled: one row per (student, school) with the bits of the
   terms of the sections of that school the student is on the roster of (school_terms,
   int_rollover__term_bits), the student's terms at every school of the district
   (student_terms) and how many schools that is. Archived enrollments count: a student
   dropped mid-year, or last year's rosters that Clever no longer shares, were still
   enrolled then. Sections without a term, or whose term runs in no period, are left out.
   One row per student and school (not per period) keeps the report's joins at the size
   of the student body. #}
with enrolled as (
    select e.district_slug, e.user_id as student_id, s.school_id, t.term_bit
    from {{ ref('fct_enrollments') }} as e
    join {{ ref('dim_sections') }} as s
      on s.district_slug = e.district_slug and s.clever_id = e.section_id
    join {{ ref('int_rollover__term_bits') }} as t
      on t.district_slug = s.district_slug and t.term_id = s.term_id
    where e.role = 'student' and {{ in_build_scope('e.district_slug') }}
),

per_school as materialized (
    select district_slug, student_id, school_id, bit_or(term_bit) as school_terms
    from enrolled
    group by district_slug, student_id, school_id
),

per_student as (
    select district_slug, student_id, bit_or(school_terms) as student_terms, count(*) as schools
    from per_school
    group by district_slug, student_id
)

select sc.district_slug, sc.student_id, sc.school_id, sc.school_terms, st.student_terms, st.schools
from per_school as sc
join per_student as st on st.district_slug = sc.district_slug and st.student_id = sc.student_id
