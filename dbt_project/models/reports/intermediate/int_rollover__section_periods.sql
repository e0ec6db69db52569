{# Which periods each section (active or archived) ran in. A section is in the school
   year of its term, and in every term range its term overlaps by more than a boundary day
   (a full-year section runs in both semesters; a fall section does not run in spring).
   Sections without a term, or whose term has no dates, are in no period. #}
with sections as (
    select district_slug, clever_id as section_id, school_id, term_id
    from {{ ref('dim_sections') }}
    where term_id is not null
),

terms as (
    select * from {{ ref('int_reports__terms') }}
),

periods as (
    select * from {{ ref('int_rollover__periods') }}
)

select
    s.district_slug,
    p.comparison,
    p.period_key,
    s.school_id,
    s.section_id
from sections as s
join terms as t
  on t.district_slug = s.district_slug and t.term_id = s.term_id
join periods as p
  on p.district_slug = s.district_slug
 and (
      (p.comparison = 'school_year' and p.period_key = {{ school_year_label('t.school_year_start') }})
   or (p.comparison = 'term' and t.start_date <= t.end_date
       and ((t.start_date = p.start_date and t.end_date = p.end_date)
            or (t.start_date < p.end_date and t.end_date > p.start_date)))
 )
