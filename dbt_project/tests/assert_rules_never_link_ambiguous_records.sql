-- Ambiguous candidates are never linked automatically: a Clever record the rules found
-- ambiguous or in conflict today is linked only by an override or by the link kept from
-- before it became ambiguous, never by today's rules; and an app record is linked by
-- the rules to at most one person.
{% for e in match_entities() %}
select '{{ e.entity }}' as entity, d.district_slug, d.clever_id, m.{{ e.app_key }} as app_id
from {{ ref(e.decisions) }} as d
join {{ ref(e.matches) }} as m on m.district_slug = d.district_slug and m.clever_id = d.clever_id
where d.status <> 'matched' and m.match_source = 'rule' and {{ in_build_scope('d.district_slug') }}
union all
select '{{ e.entity }}', min(district_slug), min(clever_id), app_id
from {{ ref(e.decisions) }}
where status = 'matched' and {{ in_build_scope('district_slug') }}
group by app_id
having count(distinct district_slug || ':' || person_key) > 1
{% if not loop.last %}union all{% endif %}
{% endfor %}
