{{ config(materialized='view') }}
-- How matching went, per district and entity: linked records by rule and source, and
-- the records in the two review reports. `make demo` prints it. A view: it counts
-- what the matches and the reports hold when read.
{% for e in match_entities() %}
select district_slug, '{{ e.entity }}' as entity, 'clever' as side, 'linked' as outcome,
       match_source, rule, count(*) as records
from {{ ref(e.matches) }}
group by district_slug, match_source, rule
union all
{% endfor %}
select district_slug, entity, 'clever', status, null, null, count(*)
from {{ ref('rpt_match_ambiguous') }}
group by district_slug, entity, status
union all
select district_slug, entity, side, 'unmatched', null, null, count(*)
from {{ ref('rpt_match_unmatched') }}
group by district_slug, entity, side
