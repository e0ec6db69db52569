{# A view: match_settings holds one row per district, and district builds read it side by side. #}
{# Each district's matching rule order, one row per (district, entity, rule), from the
   settings its sync wrote (config/districts.yml `matching:`). A rule a district left
   out has no row and is never applied there; a district whose sync never wrote its
   settings has no rules, so only manual overrides link its records. #}
select
    s.district_slug,
    e.entity,
    r.priority::integer as priority,
    r.item ->> 'rule' as rule,
    (r.item ->> 'confidence')::numeric as confidence
from {{ source('clever_landing', 'match_settings') }} as s
cross join lateral jsonb_each(s.rules) as e (entity, rules)
cross join lateral jsonb_array_elements(e.rules) with ordinality as r (item, priority)
