{# Clever records a person must decide about, one row per record and problem; resolve
   each with a row in app.match_overrides (which wins over every rule):
   - 'ambiguous': the deciding rule finds several app records, or the app record it
     finds is claimed as strongly by another person; nothing is linked;
   - 'conflict': the app record it finds is linked to another Clever record (by a
     stronger rule today, or by an earlier link that is kept), or today's rules find
     another app record than the link kept from earlier;
   - 'override_ignored': an override whose Clever record does not exist in that
     district, or whose app record is missing or in another district. #}
{% for e in match_entities() %}
select
    '{{ e.entity }}' as entity,
    d.district_slug,
    d.clever_id,
    {{ e.clever_label }} as clever_label,
    c.is_archived as is_clever_archived,
    case when d.status = 'matched' then 'conflict' else d.status end as status,
    d.rule,
    d.candidate_app_ids,
    m.{{ e.app_key }} as linked_app_id,
    case
        when d.status <> 'matched' then d.review_reason
        when m.{{ e.app_key }} is not null then 'the rules now find another app record; the earlier link is kept'
        else 'the app record is already linked to another Clever record'
    end as reason
from {{ ref(e.decisions) }} as d
join {{ ref(e.clever) }} as c on c.district_slug = d.district_slug and c.clever_id = d.clever_id
left join {{ ref(e.matches) }} as m on m.district_slug = d.district_slug and m.clever_id = d.clever_id
left join {{ source('app', 'match_overrides') }} as o
  on o.entity = '{{ e.entity }}' and o.district_slug = d.district_slug and o.clever_id = d.clever_id
where {{ in_build_scope('d.district_slug') }} and ((d.status <> 'matched' and m.clever_id is null)
   or (d.status = 'matched' and m.match_source <> 'override' and m.{{ e.app_key }} is distinct from d.app_id)
   or (d.status = 'matched' and m.clever_id is null and o.clever_id is null))
union all
select
    '{{ e.entity }}',
    o.district_slug,
    o.clever_id,
    {{ e.clever_label }},
    c.is_archived,
    'override_ignored',
    'override',
    array[o.app_id],
    m.{{ e.app_key }},
    case when c.clever_id is null then 'override ignored: no such Clever record in this district'
         else 'override ignored: the app record does not exist or belongs to another district' end
from {{ source('app', 'match_overrides') }} as o
left join {{ ref(e.clever) }} as c on c.district_slug = o.district_slug and c.clever_id = o.clever_id
left join {{ ref(e.matches) }} as m on m.district_slug = o.district_slug and m.clever_id = o.clever_id
where o.entity = '{{ e.entity }}' and {{ in_build_scope('o.district_slug') }}
  and o.app_id is not null
  and (m.clever_id is null or m.match_source <> 'override' or m.{{ e.app_key }} <> o.app_id)
{% if not loop.last %}union all{% endif %}
{% endfor %}
