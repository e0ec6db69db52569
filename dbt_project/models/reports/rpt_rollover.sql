{{ config(schema='clever_marts', materialized='table', pre_hook=no_nested_loops()) }}
{# Rollover: each period compared with the next (school year with school year, term with
   term), per school and for the whole district (is_district_total). Enrollment is
   section-based: a student is "at" a school in a period when they are on the roster of a
   section of that school that ran in the period (see int_rollover__*). For every row:
     from_students = students_stayed + students_changed_school_out + students_not_reenrolled
     to_students   = students_stayed + students_changed_school_in  + new_students
     from_sections = sections_ended + sections_continuing
     to_sections   = sections_started + sections_continuing
   Archived/restored counts are the current state of the sections and students in the
   row's two periods. #}
{% set pair_keys = ['district_slug', 'comparison', 'from_period', 'to_period'] %}
with pairs as (
    select * from {{ ref('int_rollover__period_pairs') }}
),

section_periods as (
    select * from {{ ref('int_rollover__section_periods') }}
),

student_periods as (
    select * from {{ ref('int_rollover__student_periods') }}
),

{# archived now, and whether ever archived (so active now = restored) #}
{% for cte, mart, snapshot in [('section_state', 'dim_sections', 'snap_clever__sections'),
                               ('user_state', 'dim_users', 'snap_clever__users')] %}
{{ cte }} as (
    select m.district_slug, m.clever_id, m.is_archived, coalesce(h.ever_archived, false) as ever_archived
    from {{ ref(mart) }} as m
    left join (
        select district_slug, clever_id, bool_or(dbt_is_deleted = 'True') as ever_archived
        from {{ ref(snapshot) }}
        group by district_slug, clever_id
    ) as h on h.district_slug = m.district_slug and h.clever_id = m.clever_id
),
{% endfor %}

{# one row per (pair, section) that ran in either period, and per (pair, school,
   student) enrolled there in either period #}
{% for cte, rows, member, from_flag, to_flag in [
    ('pair_sections', 'section_periods', 'section_id', 'in_from', 'in_to'),
    ('pair_student_schools', 'student_periods', 'student_id', 'at_school_from', 'at_school_to')] %}
{{ cte }} as (
    select
        {% for k in pair_keys %}p.{{ k }},{% endfor %}
        m.school_id,
        m.{{ member }},
        bool_or(m.period_key = p.from_period) as {{ from_flag }},
        bool_or(m.period_key = p.to_period) as {{ to_flag }}
    from pairs as p
    join {{ rows }} as m
      on m.district_slug = p.district_slug and m.comparison = p.comparison
     and m.period_key in (p.from_period, p.to_period)
    group by {% for k in pair_keys %}p.{{ k }}, {% endfor %}m.school_id, m.{{ member }}
),
{% endfor %}

-- one row per (pair, student): enrolled anywhere in the district in each period
pair_students as (
    select
        {% for k in pair_keys %}{{ k }},{% endfor %}
        student_id,
        bool_or(at_school_from) as in_from,
        bool_or(at_school_to) as in_to,
        bool_or(at_school_from and at_school_to) as kept_a_school
    from pair_student_schools
    group by {% for k in pair_keys %}{{ k }}, {% endfor %}student_id
),

section_facts as (
    select ps.*, st.is_archived, coalesce(st.ever_archived, false) as ever_archived
    from pair_sections as ps
    left join section_state as st on st.district_slug = ps.district_slug and st.clever_id = ps.section_id
),

student_school_facts as (
    select pss.*, s.in_from, s.in_to, u.is_archived, coalesce(u.ever_archived, false) as ever_archived
    from pair_student_schools as pss
    join pair_students as s
      on {% for k in pair_keys %}s.{{ k }} = pss.{{ k }} and {% endfor %}s.student_id = pss.student_id
    left join user_state as u on u.district_slug = pss.district_slug and u.clever_id = pss.student_id
),

student_facts as (
    select s.*, u.is_archived, coalesce(u.ever_archived, false) as ever_archived
    from pair_students as s
    left join user_state as u on u.district_slug = s.district_slug and u.clever_id = s.student_id
),

{% set section_measures %}
        count(*) filter (where in_from) as from_sections,
        count(*) filter (where in_to) as to_sections,
        count(*) filter (where in_from and not in_to) as sections_ended,
        count(*) filter (where in_to and not in_from) as sections_started,
        count(*) filter (where in_from and in_to) as sections_continuing,
        count(*) filter (where is_archived) as sections_archived,
        count(*) filter (where not is_archived and ever_archived) as sections_restored
{% endset %}

school_sections as (
    select {% for k in pair_keys %}{{ k }}, {% endfor %}school_id, {{ section_measures }}
    from section_facts
    group by {% for k in pair_keys %}{{ k }}, {% endfor %}school_id
),

school_students as (
    select
        {% for k in pair_keys %}{{ k }}, {% endfor %}school_id,
        count(*) filter (where at_school_from) as from_students,
        count(*) filter (where at_school_to) as to_students,
        count(*) filter (where at_school_from and at_school_to) as students_stayed,
        count(*) filter (where at_school_from and not at_school_to and in_to) as students_changed_school_out,
        count(*) filter (where at_school_to and not at_school_from and in_from) as students_changed_school_in,
        count(*) filter (where at_school_from and not in_to) as students_not_reenrolled,
        count(*) filter (where at_school_to and not in_from) as new_students,
        count(*) filter (where is_archived) as students_archived,
        count(*) filter (where not is_archived and ever_archived) as students_restored
    from student_school_facts
    group by {% for k in pair_keys %}{{ k }}, {% endfor %}school_id
),

district_sections as (
    select {% for k in pair_keys %}{{ k }}, {% endfor %}{{ section_measures }}
    from section_facts
    group by {% for k in pair_keys %}{{ k }}{% if not loop.last %}, {% endif %}{% endfor %}
),

-- district-wide, a student "changed school" when enrolled in both periods but at none
-- of the same schools
district_students as (
    select
        {% for k in pair_keys %}{{ k }}, {% endfor %}
        count(*) filter (where in_from) as from_students,
        count(*) filter (where in_to) as to_students,
        count(*) filter (where in_from and in_to and kept_a_school) as students_stayed,
        count(*) filter (where in_from and in_to and not kept_a_school) as students_changed_school_out,
        count(*) filter (where in_from and in_to and not kept_a_school) as students_changed_school_in,
        count(*) filter (where in_from and not in_to) as students_not_reenrolled,
        count(*) filter (where in_to and not in_from) as new_students,
        count(*) filter (where is_archived) as students_archived,
        count(*) filter (where not is_archived and ever_archived) as students_restored
    from student_facts
    group by {% for k in pair_keys %}{{ k }}{% if not loop.last %}, {% endif %}{% endfor %}
),

report_rows as (
    select
        {% for k in pair_keys %}sec.{{ k }}, {% endfor %}
        false as is_district_total,
        sec.school_id,
        sec.from_sections, sec.to_sections, sec.sections_ended, sec.sections_started, sec.sections_continuing,
        coalesce(st.from_students, 0) as from_students,
        coalesce(st.to_students, 0) as to_students,
        coalesce(st.students_stayed, 0) as students_stayed,
        coalesce(st.students_changed_school_out, 0) as students_changed_school_out,
        coalesce(st.students_changed_school_in, 0) as students_changed_school_in,
        coalesce(st.students_not_reenrolled, 0) as students_not_reenrolled,
        coalesce(st.new_students, 0) as new_students,
        sec.sections_archived, sec.sections_restored,
        coalesce(st.students_archived, 0) as students_archived,
        coalesce(st.students_restored, 0) as students_restored
    from school_sections as sec
    left join school_students as st
      on {% for k in pair_keys %}st.{{ k }} = sec.{{ k }} and {% endfor %}st.school_id = sec.school_id
    union all
    select
        {% for k in pair_keys %}sec.{{ k }}, {% endfor %}
        true as is_district_total,
        null::text as school_id,
        sec.from_sections, sec.to_sections, sec.sections_ended, sec.sections_started, sec.sections_continuing,
        coalesce(st.from_students, 0),
        coalesce(st.to_students, 0),
        coalesce(st.students_stayed, 0),
        coalesce(st.students_changed_school_out, 0),
        coalesce(st.students_changed_school_in, 0),
        coalesce(st.students_not_reenrolled, 0),
        coalesce(st.new_students, 0),
        sec.sections_archived, sec.sections_restored,
        coalesce(st.students_archived, 0),
        coalesce(st.students_restored, 0)
    from district_sections as sec
    left join district_students as st
      on {% for k in pair_keys %}st.{{ k }} = sec.{{ k }}{% if not loop.last %} and {% endif %}{% endfor %}
)

select
    r.district_slug,
    r.comparison,
    r.from_period,
    p.from_period_name,
    p.from_start_date,
    p.from_end_date,
    r.to_period,
    p.to_period_name,
    p.to_start_date,
    p.to_end_date,
    r.is_district_total,
    r.school_id,
    sc.name as school_name,
    r.from_sections,
    r.to_sections,
    r.sections_ended,
    r.sections_started,
    r.sections_continuing,
    r.from_students,
    r.to_students,
    r.students_stayed,
    r.students_changed_school_out,
    r.students_changed_school_in,
    r.students_not_reenrolled,
    r.new_students,
    r.sections_archived,
    r.sections_restored,
    r.students_archived,
    r.students_restored,
    ce.synced_at as data_as_of
from report_rows as r
join pairs as p
  on {% for k in pair_keys %}p.{{ k }} = r.{{ k }}{% if not loop.last %} and {% endif %}{% endfor %}
left join {{ ref('dim_schools') }} as sc
  on sc.district_slug = r.district_slug and sc.clever_id = r.school_id
left join {{ ref('stg_clever__current_extractions') }} as ce
  on ce.district_slug = r.district_slug and ce.endpoint = 'sections'
