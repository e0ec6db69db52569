{{ config(materialized='incremental', unique_key=['district_slug', 'data_type', 'day'],
          incremental_strategy='delete+insert') }}
{# Per district, data type and day (UTC): how the counts of active and archived records
   changed (+1 when a version starts, -1 when it ends) and how many records were added,
   archived and restored, from the snapshots' version history.
   Snapshot history only grows, at the time of each build: a version starts when a
   snapshot writes it and ends when a later snapshot writes the next version of its key
   (at the same time). So a build adds to its day only the starts and ends after the
   district's covered_until (the latest snapshot time already counted for it): the
   versions of the keys that got a new version since, read through the key index. A
   quiet day reads a few thousand versions, not the whole history, and a district's build
   reads only its own. `full_refresh` recounts everything. #}
{{ require_incremental_when_scoped() }}
{% set histories = [
    ('districts', 'snap_clever__districts', ['clever_id']),
    ('schools', 'snap_clever__schools', ['clever_id']),
    ('users', 'snap_clever__users', ['clever_id']),
    ('sections', 'snap_clever__sections', ['clever_id']),
    ('terms', 'snap_clever__terms', ['clever_id']),
    ('courses', 'snap_clever__courses', ['clever_id']),
    ('enrollments', 'snap_clever__section_enrollments', ['section_id', 'user_id', 'role']),
] %}
{% set adds_to_earlier = is_incremental() and not scoped_full_refresh() %}
{# a district's build: its watermark as a constant (see district_watermark_literal) #}
{% set covered_until = district_watermark_literal(this, 'covered_until') if is_incremental() else none %}
{% set since = covered_until if covered_until is not none else "coalesce(c.covered_until, '-infinity')" %}
{% set since_sc = covered_until if covered_until is not none else "coalesce(sc.covered_until, '-infinity')" %}
with covered as (
    {% if is_incremental() %}
    {{ district_watermarks(this, 'covered_until') }}
    {% else %}
    select null::text as district_slug, null::timestamp as covered_until where false
    {% endif %}
),

versions as (
    {% for data_type, snapshot, keys in histories %}
    {% set v_keys = 'v.' ~ keys | join(', v.') %}
    {% set s_keys = 's.' ~ keys | join(', s.') %}
    select
        '{{ data_type }}'::text as data_type,
        v.district_slug,
        v.dbt_is_deleted = 'True' as is_archived,
        lag(v.dbt_is_deleted) over (partition by v.district_slug, {{ v_keys }}
                                    order by v.dbt_valid_from) as previous_is_deleted,
        v.dbt_valid_from,
        v.dbt_valid_to,
        {{ since }} as since
    from {{ ref(snapshot) }} as v
    {% if covered_until is none %}left join covered as c on c.district_slug = v.district_slug{% endif %}
    where {{ in_build_scope('v.district_slug') }}
      and (v.district_slug, {{ v_keys }}) in (
          select s.district_slug, {{ s_keys }}
          from {{ ref(snapshot) }} as s
          {% if covered_until is none %}left join covered as sc on sc.district_slug = s.district_slug{% endif %}
          where {{ in_build_scope('s.district_slug') }}
            and s.dbt_valid_from > {{ since_sc }})
      and (v.dbt_valid_from > {{ since }} or v.dbt_valid_to > {{ since }})
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

events as (
    select district_slug, data_type, dbt_valid_from::date as day,
           case when is_archived then 0 else 1 end as active_delta,
           case when is_archived then 1 else 0 end as archived_delta,
           case when previous_is_deleted is null then 1 else 0 end as added,
           case when is_archived then 1 else 0 end as archived,
           case when not is_archived and previous_is_deleted = 'True' then 1 else 0 end as restored
    from versions
    where dbt_valid_from > since
    union all
    select district_slug, data_type, dbt_valid_to::date,
           case when is_archived then 0 else -1 end,
           case when is_archived then -1 else 0 end,
           0, 0, 0
    from versions
    where dbt_valid_to > since
),

changes as (
    select district_slug, data_type, day,
           sum(active_delta) as active_delta, sum(archived_delta) as archived_delta,
           sum(added) as added, sum(archived) as archived, sum(restored) as restored
    from events
    group by district_slug, data_type, day
),

covered_now as (
    select district_slug, max(greatest(dbt_valid_from, dbt_valid_to)) as covered_until
    from versions
    group by district_slug
)

select
    c.district_slug,
    c.data_type,
    c.day,
    {% for measure in ['active_delta', 'archived_delta', 'added', 'archived', 'restored'] %}
    c.{{ measure }}{% if adds_to_earlier %} + coalesce(earlier.{{ measure }}, 0){% endif %} as {{ measure }},
    {% endfor %}
    n.covered_until
from changes as c
join covered_now as n on n.district_slug = c.district_slug
{% if adds_to_earlier %}
left join {{ this }} as earlier
  on earlier.district_slug = c.district_slug and earlier.data_type = c.data_type and earlier.day = c.day
{% endif %}
