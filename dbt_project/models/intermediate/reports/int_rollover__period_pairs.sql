{# Each period with the one that follows it:
   - a school year with the next school year that has terms;
   - a term with the first term range that starts after it ends (of several starting that
     day, the longest: after a spring semester comes next year's full year, not its fall). #}
with periods as (
    select * from {{ ref('int_rollover__periods') }}
),

school_year_pairs as (
    select
        district_slug,
        comparison,
        period_key as from_period,
        period_name as from_period_name,
        start_date as from_start_date,
        end_date as from_end_date,
        lead(period_key) over next_year as to_period,
        lead(period_name) over next_year as to_period_name,
        lead(start_date) over next_year as to_start_date,
        lead(end_date) over next_year as to_end_date
    from periods
    where comparison = 'school_year'
    window next_year as (partition by district_slug order by start_date)
),

term_pairs as (
    select
        f.district_slug,
        f.comparison,
        f.period_key as from_period,
        f.period_name as from_period_name,
        f.start_date as from_start_date,
        f.end_date as from_end_date,
        n.period_key as to_period,
        n.period_name as to_period_name,
        n.start_date as to_start_date,
        n.end_date as to_end_date
    from periods as f
    cross join lateral (
        select period_key, period_name, start_date, end_date
        from periods as candidate
        where candidate.district_slug = f.district_slug
          and candidate.comparison = 'term'
          and candidate.start_date > f.end_date
        order by candidate.start_date, candidate.end_date desc
        limit 1
    ) as n
    where f.comparison = 'term'
)

select * from school_year_pairs where to_period is not null
union all
select * from term_pairs
