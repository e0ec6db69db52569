{# The periods a rollover compares, per district:
   - comparison 'school_year': one per school year that has a term, from the first day of
     its start month to the day before the next school year;
   - comparison 'term': one per distinct term date range. Terms with the same dates (a
     term Clever re-issued under a new ID, or per-school copies) are one period. #}
with terms as (
    select * from {{ ref('int_reports__terms') }}
),

school_years as (
    select
        district_slug,
        'school_year'::text as comparison,
        {{ school_year_label('school_year_start') }} as period_key,
        {{ school_year_label('school_year_start') }} as period_name,
        make_date(school_year_start, {{ var('school_year_start_month') }}, 1) as start_date,
        (make_date(school_year_start + 1, {{ var('school_year_start_month') }}, 1) - 1) as end_date
    from terms
    where school_year_start is not null
    group by district_slug, school_year_start
),

term_ranges as (
    select
        district_slug,
        'term'::text as comparison,
        start_date::text || '..' || end_date::text as period_key,
        string_agg(distinct coalesce(term_name, '(unnamed term)'), ' / ') as period_name,
        start_date,
        end_date
    from terms
    where start_date is not null and end_date is not null and start_date <= end_date
    group by district_slug, start_date, end_date
)

select * from school_years
union all
select * from term_ranges
