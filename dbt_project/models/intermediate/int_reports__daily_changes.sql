{{ config(materialized='incremental', unique_key=['district_slug', 'data_type', 'day'],
          incremental_strategy='delete+insert') }}
{# Per district, data type and day (UTC): how the counts of active and archived records
   changed (+1 when a version starts, -1 when it ends) and how many records were added,
   archived and restored, from the snapshots' version history.
   Snapshot history only grows, at the time of each build: a version starts when a
   snapshot writes it and ends when a later snapshot writes the next version of its key.
   So a build adds to its day only the starts and ends after covered_until (the latest
   snapshot time already counted); a version's predecessor ends the moment it starts, so
   it is among them. A quiet day reads a few thousand versions, not the whole history.
   `full_refresh` recounts everything. #}
{% set histories = [
    ('districts', 'snap_clever__districts', ['clever_id']),
    ('schools', 'snap_clever__schools', ['clever_id']),
    ('users', 'snap_clever__users', ['clever_id']),
    ('sections', 'snap_clever__sections', ['clever_id']),
    ('terms', 'snap_clever__terms', ['clever_id']),
    ('courses', 'snap_clever__courses', ['clever_id']),
    ('enrollments', 'snap_clever__section_enrollments', ['section_id', 'user_id', 'role']),
] %}
{% set since %}{% if is_incremental() %}(select max(covered_until) from {{ this }}){% else %}'-infinity'::timestamp{% endif %}{% endset %}
with versions as (
    {% for data_type, snapshot, keys in histories %}
    select
        '{{ data_type }}'::text as data_type,
        district_slug,
        dbt_is_deleted = 'True' as is_archived,
        lag(dbt_is_deleted) over (partition by district_slug, {{ keys | join(', ') }}
                                  order by dbt_valid_from) as previous_is_deleted,
        dbt_valid_from,
        dbt_valid_to
    from {{ ref(snapshot) }}
    where dbt_valid_from > {{ since }} or dbt_valid_to > {{ since }}
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
    where dbt_valid_from > {{ since }}
    union all
    select district_slug, data_type, dbt_valid_to::date,
           case when is_archived then 0 else -1 end,
           case when is_archived then -1 else 0 end,
           0, 0, 0
    from versions
    where dbt_valid_to > {{ since }}
),

changes as (
    select district_slug, data_type, day,
           sum(active_delta) as active_delta, sum(archived_delta) as archived_delta,
           sum(added) as added, sum(archived) as archived, sum(restored) as restored
    from events
    group by district_slug, data_type, day
),

covered as (
    select max(greatest(dbt_valid_from, dbt_valid_to)) as covered_until from versions
)

select
    c.district_slug,
    c.data_type,
    c.day,
    {% for measure in ['active_delta', 'archived_delta', 'added', 'archived', 'restored'] %}
    c.{{ measure }}{% if is_incremental() %} + coalesce(earlier.{{ measure }}, 0){% endif %} as {{ measure }},
    {% endfor %}
    (select covered_until from covered) as covered_until
from changes as c
{% if is_incremental() %}
left join {{ this }} as earlier
  on earlier.district_slug = c.district_slug and earlier.data_type = c.data_type and earlier.day = c.day
{% endif %}
