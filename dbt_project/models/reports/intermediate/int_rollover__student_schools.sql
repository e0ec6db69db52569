{# Where each student was enrolled: one row per (student, school) with the terms of the
   sections of that school the student is on the roster of (term_ids), and the student's
   terms at any school of the district (all_term_ids). Archived enrollments count: a
   student dropped mid-year, or last year's rosters that Clever no longer shares, were
   still enrolled then. Sections without a term are in no period and left out.
   One row per student and school (not per period) keeps the report's joins at the size of
   the student body: a period's students are the rows whose terms overlap its terms.
   The arrays may repeat a term (array_agg without DISTINCT lets PostgreSQL hash). #}
with enrolled as (
    select e.district_slug, e.user_id as student_id, s.school_id, s.term_id
    from {{ ref('fct_enrollments') }} as e
    join {{ ref('dim_sections') }} as s
      on s.district_slug = e.district_slug and s.clever_id = e.section_id
    where e.role = 'student' and s.term_id is not null
),

per_school as (
    select district_slug, student_id, school_id, array_agg(term_id) as term_ids
    from enrolled
    group by district_slug, student_id, school_id
),

per_student as (
    select district_slug, student_id, array_agg(term_id) as all_term_ids
    from enrolled
    group by district_slug, student_id
)

select sc.district_slug, sc.student_id, sc.school_id, sc.term_ids, st.all_term_ids
from per_school as sc
join per_student as st on st.district_slug = sc.district_slug and st.student_id = sc.student_id
