{# Current state of every record a snapshot has ever held, with its archive status:
   - is_archived / archived_at: the latest version is a dbt deletion row
     (dbt_is_deleted = 'True'); archived_at is when the sync that found it missing ran;
   - first_seen_at: start of the first approved extraction that returned the record
     (same clock as last_seen_at, so first_seen_at <= last_seen_at);
   - last_seen_at: for active records the district's latest approved extraction of the
     endpoint; for archived ones the approved extraction before the one that archived it.
   Snapshot times are UTC (dbt runs with PGTZ=UTC); they are exposed as timestamptz.
   A restored record's latest version is a 'False' row again: is_archived = false, same
   key, and the archived period stays in the snapshot. #}
{% macro archived_dimension(snapshot_name, endpoint, keys=['district_slug', 'clever_id']) %}
{% set relation = ref(snapshot_name) %}
{% set internal = ['dbt_scd_id', 'dbt_updated_at', 'dbt_valid_from', 'dbt_valid_to', 'dbt_is_deleted',
                   'raw', 'record_hash', 'synced_at', 'sync_run_id'] %}
{% set columns = [] %}
{% if execute %}
  {% for column in adapter.get_columns_in_relation(relation) %}
    {% if column.name not in internal %}{% do columns.append(column.name) %}{% endif %}
  {% endfor %}
{% endif %}
with history as (
    select * from {{ relation }}
),

current_version as (
    select * from history where dbt_valid_to is null
),

first_seen as (
    select {{ keys | join(', ') }}, min(synced_at) as first_seen_at
    from history
    group by {{ keys | join(', ') }}
),

approvals as (
    select
        district_slug,
        approved_at,
        lag(synced_at) over (partition by district_slug order by approved_at, sync_run_id) as previous_synced_at
    from {{ source('clever_landing', 'approved_extractions') }}
    where endpoint = '{{ endpoint }}'
),

current_extraction as (
    select district_slug, synced_at
    from {{ ref('stg_clever__current_extractions') }}
    where endpoint = '{{ endpoint }}'
)

select
    {% for column in columns %}cv.{{ adapter.quote(column) }},
    {% endfor -%}
    cv.dbt_is_deleted = 'True' as is_archived,
    case when cv.dbt_is_deleted = 'True' then cv.dbt_valid_from at time zone 'UTC' end as archived_at,
    fs.first_seen_at,
    case
        when cv.dbt_is_deleted = 'True' then (
            select a.previous_synced_at
            from approvals as a
            where a.district_slug = cv.district_slug and a.approved_at <= cv.dbt_valid_from at time zone 'UTC'
            order by a.approved_at desc
            limit 1)
        else ce.synced_at
    end as last_seen_at,
    cv.dbt_valid_from at time zone 'UTC' as version_valid_from,
    cv.sync_run_id as version_sync_run_id
from current_version as cv
join first_seen as fs
  on {% for key in keys %}fs.{{ key }} = cv.{{ key }}{% if not loop.last %} and {% endif %}{% endfor %}
left join current_extraction as ce
  on ce.district_slug = cv.district_slug
{% endmacro %}
