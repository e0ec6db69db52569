{# Records with no link and nothing to decide (those are in rpt_match_ambiguous), from
   both sides:
   - side 'clever': Clever records no app record matches. For a new district most are
     simply new to the application; an unmatched record of a known person is linked
     with an app.match_overrides row;
   - side 'app': the application's records that no Clever record is linked to (legacy
     accounts of people the district does not share, schools that closed, ...). #}
{% for e in match_entities() %}
select
    '{{ e.entity }}' as entity,
    'clever' as side,
    c.district_slug,
    c.clever_id,
    null::bigint as app_id,
    {{ e.clever_label }} as label,
    c.is_archived as is_clever_archived,
    case
        when o.clever_id is not null then 'unlinked by an override'
        {% if e.entity != 'district' %}
        when ld.district_slug is null then 'its district is not linked to an app district'
        {% endif %}
        else 'no app record matches any rule'
    end as reason
from {{ ref(e.clever) }} as c
left join {{ source('app', 'match_overrides') }} as o
  on o.entity = '{{ e.entity }}' and o.district_slug = c.district_slug and o.clever_id = c.clever_id
 and o.app_id is null
left join {{ ref(e.decisions) }} as d on d.district_slug = c.district_slug and d.clever_id = c.clever_id
left join (select distinct district_slug from {{ ref('district_matches') }}) as ld on ld.district_slug = c.district_slug
where not exists (select 1 from {{ ref(e.matches) }} as m
                  where m.district_slug = c.district_slug and m.clever_id = c.clever_id)
  and (o.clever_id is not null or d.clever_id is null)
union all
select
    '{{ e.entity }}',
    'app',
    dm.district_slug,
    null::text,
    a.{{ e.app_key }},
    {{ e.app_label }},
    null::boolean,
    {% if e.entity == 'district' %}'no Clever district is linked to it'
    {% else %}case when dm.district_slug is null then 'its app district is not linked to a Clever district'
         else 'no Clever record is linked to it' end{% endif %}
from {{ ref(e.app) }} as a
left join (select distinct app_district_id, district_slug from {{ ref('district_matches') }}) as dm
  on dm.app_district_id = {{ e.app_district }}
where not exists (select 1 from {{ ref(e.matches) }} as m where m.{{ e.app_key }} = a.{{ e.app_key }})
{% if not loop.last %}union all{% endif %}
{% endfor %}
