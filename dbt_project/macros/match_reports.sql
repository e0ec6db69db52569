{# Records with no link and nothing to decide, from both sides (see rpt_match_unmatched):
   - side 'clever': Clever records no app record matches;
   - side 'app': the application's records no Clever record is linked to.
   remainder=false: the rows of the build's districts (int_reports__match_unmatched);
   remainder=true: app records that table does not hold (their app district is linked to
   no configured district, or they were added since its last build), with no district
   (macros/app_marts.sql explains the two parts). #}
{% macro match_unmatched_rows(remainder) %}
{% for e in match_entities() %}
{% if not remainder %}
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
left join (select distinct district_slug from {{ ref('dim_district_matches') }}) as ld on ld.district_slug = c.district_slug
where {{ in_build_scope('c.district_slug') }}
  and not exists (select 1 from {{ ref(e.matches) }} as m
                  where m.district_slug = c.district_slug and m.clever_id = c.clever_id)
  and (o.clever_id is not null or d.clever_id is null)
union all
{% endif %}
select
    '{{ e.entity }}',
    'app',
    {% if remainder %}null::text{% else %}dm.district_slug{% endif %},
    null::text,
    a.{{ e.app_key }},
    {{ e.app_label }},
    null::boolean,
    {% if e.entity == 'district' %}'no Clever district is linked to it'
    {% else %}case when dm.district_slug is null then 'its app district is not linked to a Clever district'
         {% if e.entity == 'school' %}
         when ds.integration = 'sso' then 'its Clever district is District SSO (integration sso): Clever sends no schools'
         {% endif %}
         else 'no Clever record is linked to it' end{% endif %}
from {{ ref(e.app) }} as a
left join (select distinct app_district_id, district_slug from {{ ref('dim_district_matches') }}) as dm
  on dm.app_district_id = {{ e.app_district }}
{% if e.entity == 'school' %}
left join {{ source('clever_landing', 'district_settings') }} as ds on ds.district_slug = dm.district_slug
{% endif %}
where not exists (select 1 from {{ ref(e.matches) }} as m where m.{{ e.app_key }} = a.{{ e.app_key }})
{% if remainder %}
  and not exists (select 1 from {{ ref('int_reports__match_unmatched') }} as t
                  where t.row_key = 'app:{{ e.entity }}:' || a.{{ e.app_key }})
{% else %}
  and dm.district_slug is not null and {{ in_build_scope('dm.district_slug') }}
{% endif %}
{% if not loop.last %}union all{% endif %}
{% endfor %}
{% endmacro %}
