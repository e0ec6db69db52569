{{ config(materialized='table') }}
{# Active and archived records per district and data type at the end of every day (UTC)
   from the district's first sync to the day of the build, from the snapshots' version
   history, plus what happened that day. Built from per-day deltas (+1 when a version
   starts, -1 when it ends) summed over the days, so its cost grows with the number of
   versions, not versions x days. #}
{% set histories = [
    ('districts', 'snap_clever__districts', ['clever_id']),
    ('schools', 'snap_clever__schools', ['clever_id']),
    ('users', 'snap_clever__users', ['clever_id']),
    ('sections', 'snap_clever__sections', ['clever_id']),
    ('terms', 'snap_clever__terms', ['clever_id']),
    ('courses', 'snap_clever__courses', ['clever_id']),
    ('enrollments', 'snap_clever__section_enrollments', ['section_id', 'user_id', 'role']),
] %}
with versions as (
    {% for data_type, snapshot, keys in histories %}
    select
        '{{ data_type }}'::text as data_type,
        district_slug,
        dbt_is_deleted = 'True' as is_archived,
        lag(dbt_is_deleted) over (partition by district_slug, {{ keys | join(', ') }}
                                  order by dbt_valid_from) as previous_is_deleted,
        dbt_valid_from::date as valid_from_day,
        dbt_valid_to::date as valid_to_day
    from {{ ref(snapshot) }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

events as (
    select district_slug, data_type, valid_from_day as day,
           case when is_archived then 0 else 1 end as active_delta,
           case when is_archived then 1 else 0 end as archived_delta,
           case when previous_is_deleted is null then 1 else 0 end as added,
           case when is_archived then 1 else 0 end as archived,
           case when not is_archived and previous_is_deleted = 'True' then 1 else 0 end as restored
    from versions
    union all
    select district_slug, data_type, valid_to_day,
           case when is_archived then 0 else -1 end,
           case when is_archived then -1 else 0 end,
           0, 0, 0
    from versions
    where valid_to_day is not null
),

daily as (
    select district_slug, data_type, day,
           sum(active_delta) as active_delta, sum(archived_delta) as archived_delta,
           sum(added) as added, sum(archived) as archived, sum(restored) as restored
    from events
    group by district_slug, data_type, day
),

spine as (
    select f.district_slug, f.data_type, d::date as day
    from (select district_slug, data_type, min(day) as first_day from daily group by district_slug, data_type) as f
    cross join lateral generate_series(f.first_day, (now() at time zone 'UTC')::date, interval '1 day') as d
)

select
    s.district_slug,
    s.data_type,
    s.day,
    sum(coalesce(d.active_delta, 0)) over running as active_records,
    sum(coalesce(d.archived_delta, 0)) over running as archived_records,
    coalesce(d.added, 0) as added_that_day,
    coalesce(d.archived, 0) as archived_that_day,
    coalesce(d.restored, 0) as restored_that_day
from spine as s
left join daily as d
  on d.district_slug = s.district_slug and d.data_type = s.data_type and d.day = s.day
window running as (partition by s.district_slug, s.data_type order by s.day)
