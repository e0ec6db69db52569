{# Which periods each term runs in: the school year it belongs to, and every term range it
   overlaps by more than a boundary day (a full-year term runs in both semesters; a fall
   term does not run in spring). A term without dates is in no period. Sections and
   students get their periods through their terms, so this small table is the only place
   dates are compared. #}
with terms as (
    select * from {{ ref('int_reports__terms') }}
),

periods as (
    select * from {{ ref('int_rollover__periods') }}
)

select
    t.district_slug,
    t.term_id,
    p.comparison,
    p.period_key
from terms as t
join periods as p
  on p.district_slug = t.district_slug
 and (
      (p.comparison = 'school_year' and p.period_key = {{ school_year_label('t.school_year_start') }})
   or (p.comparison = 'term' and t.start_date <= t.end_date
       and ((t.start_date = p.start_date and t.end_date = p.end_date)
            or (t.start_date < p.end_date and t.end_date > p.start_date)))
 )
