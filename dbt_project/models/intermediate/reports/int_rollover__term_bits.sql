{# One bit per term that runs in some period, per district: the term's bit set in a bit
   string as long as the district has such terms. A student's terms at a school, at
   every school, and a period's terms are then bit strings OR-ed together, and "ran in
   the period" is a bitwise AND: the report's million-row aggregates move a few bytes a
   row instead of arrays of IDs. #}
with terms as (
    select distinct district_slug, term_id from {{ ref('int_rollover__term_periods') }}
),

numbered as (
    select
        district_slug,
        term_id,
        row_number() over (partition by district_slug order by term_id)::int as position,
        count(*) over (partition by district_slug)::int as terms
    from terms
)

select
    district_slug,
    term_id,
    (repeat('0', position - 1) || '1' || repeat('0', terms - position))::varbit as term_bit
from numbered
