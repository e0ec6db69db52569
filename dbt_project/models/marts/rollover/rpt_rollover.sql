{{ config(pre_hook=[no_nested_loops(), hash_aggregates(), bounded_hash_memory()]) }}
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
{# Work is keyed by a small integer per pair, not by its four text columns: the student
   rows (pairs x students) are hashed and grouped several times. #}
with pairs as (
    select *, row_number() over (order by district_slug, comparison, from_period, to_period) as pair_id
    from {{ ref('int_rollover__period_pairs') }}
),

-- the terms that ran in each pair's earlier (in_from) and later (in_to) period
pair_terms as (
    select
        p.pair_id,
        p.district_slug,
        tp.term_id,
        bool_or(tp.period_key = p.from_period) as in_from,
        bool_or(tp.period_key = p.to_period) as in_to
    from pairs as p
    join {{ ref('int_rollover__term_periods') }} as tp
      on tp.district_slug = p.district_slug and tp.comparison = p.comparison
     and tp.period_key in (p.from_period, p.to_period)
    group by p.pair_id, p.district_slug, tp.term_id
),

-- each pair's periods as bit strings of their terms (int_rollover__term_bits)
pair_masks as (
    select
        pt.pair_id,
        pt.district_slug,
        coalesce(bit_or(tb.term_bit) filter (where pt.in_from), bit_or(tb.term_bit) & ~bit_or(tb.term_bit))
            as from_terms,
        coalesce(bit_or(tb.term_bit) filter (where pt.in_to), bit_or(tb.term_bit) & ~bit_or(tb.term_bit))
            as to_terms
    from pair_terms as pt
    join {{ ref('int_rollover__term_bits') }} as tb
      on tb.district_slug = pt.district_slug and tb.term_id = pt.term_id
    group by pt.pair_id, pt.district_slug
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
        where {{ in_build_scope('district_slug') }}
        group by district_slug, clever_id
    ) as h on h.district_slug = m.district_slug and h.clever_id = m.clever_id
    where {{ in_build_scope('m.district_slug') }}
),
{% endfor %}

-- one row per (pair, section) whose term ran in either period
section_facts as (
    select pt.pair_id, s.school_id, s.clever_id as section_id, pt.in_from, pt.in_to,
           st.is_archived, coalesce(st.ever_archived, false) as ever_archived
    from pair_terms as pt
    join {{ ref('dim_sections') }} as s
      on s.district_slug = pt.district_slug and s.term_id = pt.term_id and {{ in_build_scope('s.district_slug') }}
    left join section_state as st on st.district_slug = s.district_slug and st.clever_id = s.clever_id
),

-- every (student, school) with the student's archive state, joined once, before the
-- rows multiply by pair
student_schools as materialized (
    select ss.*, u.is_archived, coalesce(u.ever_archived, false) as ever_archived
    from {{ ref('int_rollover__student_schools') }} as ss
    left join user_state as u on u.district_slug = ss.district_slug and u.clever_id = ss.student_id
),

-- one row per (pair, school, student) enrolled there in either period, with whether the
-- student was enrolled anywhere in the district in each period
student_school_facts as materialized (
    select
        pm.pair_id,
        ss.district_slug,
        ss.school_id,
        ss.student_id,
        ss.schools,
        bit_count(ss.school_terms & pm.from_terms) > 0 as at_school_from,
        bit_count(ss.school_terms & pm.to_terms) > 0 as at_school_to,
        bit_count(ss.student_terms & pm.from_terms) > 0 as in_from,
        bit_count(ss.student_terms & pm.to_terms) > 0 as in_to,
        ss.is_archived,
        ss.ever_archived
    from pair_masks as pm
    join student_schools as ss on ss.district_slug = pm.district_slug
    where bit_count(ss.school_terms & (pm.from_terms | pm.to_terms)) > 0
),

-- one row per (pair, student) enrolled in either period. A student at one school (most)
-- is that school's row; only students of several schools are grouped, to tell whether
-- they kept one of their schools.
student_facts as (
    select pair_id, student_id, in_from, in_to, at_school_from and at_school_to as kept_a_school,
           is_archived, ever_archived
    from student_school_facts
    where schools = 1
    union all
    select
        pair_id,
        student_id,
        bool_or(in_from),
        bool_or(in_to),
        bool_or(at_school_from and at_school_to),
        bool_or(is_archived),
        bool_or(ever_archived)
    from student_school_facts
    where schools > 1
    group by pair_id, student_id
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
    select pair_id, school_id, {{ section_measures }}
    from section_facts
    group by pair_id, school_id
),

school_students as (
    select
        pair_id,
        school_id,
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
    group by pair_id, school_id
),

district_sections as (
    select pair_id, {{ section_measures }}
    from section_facts
    group by pair_id
),

-- district-wide, a student "changed school" when enrolled in both periods but at none
-- of the same schools
district_students as (
    select
        pair_id,
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
    group by pair_id
),

report_rows as (
    select
        sec.pair_id,
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
      on st.pair_id = sec.pair_id and st.school_id = sec.school_id
    union all
    select
        sec.pair_id,
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
    left join district_students as st on st.pair_id = sec.pair_id
)

select
    p.district_slug,
    p.comparison,
    p.from_period,
    p.from_period_name,
    p.from_start_date,
    p.from_end_date,
    p.to_period,
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
join pairs as p on p.pair_id = r.pair_id
left join {{ ref('dim_schools') }} as sc
  on sc.district_slug = p.district_slug and sc.clever_id = r.school_id and {{ in_build_scope('sc.district_slug') }}
left join {{ ref('stg_clever__current_extractions') }} as ce
  on ce.district_slug = p.district_slug and ce.endpoint = 'sections' and {{ in_build_scope('ce.district_slug') }}
