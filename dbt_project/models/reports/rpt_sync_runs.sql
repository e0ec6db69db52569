{# Sync health, one row per sync run: outcome, durations, rows landed, failed step and
   endpoints, guard trips, quarantined records, failed validation rules and history written. A view, so a run is
   visible while it runs and after it fails, not only after the next build.
   It runs with its owner's privileges: clever_bi reads it without any access to
   clever_landing. Error messages are left out on purpose (an HTTP error quotes Clever's
   response body); they stay in clever_landing and the Airflow logs. #}
with runs as (
    select * from {{ source('clever_landing', 'sync_runs') }}
),

endpoints as (
    -- an events run's read of the events ('events') is counted apart from the records it landed
    select
        sync_run_id,
        count(*) filter (where status = 'completed' and endpoint <> 'events') as endpoints_completed,
        count(*) filter (where status = 'failed') as endpoints_failed,
        array_agg(endpoint order by endpoint) filter (where status = 'failed') as failed_endpoints,
        array_agg(endpoint order by endpoint) filter (where status = 'out_of_scope') as out_of_scope_endpoints,
        coalesce(sum(row_count) filter (where endpoint <> 'events'), 0) as rows_landed,
        sum(page_count) as pages_read,
        sum(row_count) filter (where endpoint = 'events')::bigint as events_read
    from {{ source('clever_landing', 'endpoint_runs') }}
    group by sync_run_id
),

guard as (
    select
        sync_run_id,
        count(*) filter (where tripped) as guard_trips,
        count(*) filter (where tripped and overridden) as guard_overrides,
        array_agg(data_type order by data_type) filter (where tripped) as guard_tripped_data_types
    from {{ source('clever_landing', 'guard_checks') }}
    group by sync_run_id
),

quarantined as (
    select sync_run_id, count(*) as quarantined_records
    from {{ source('clever_landing', 'quarantine') }}
    group by sync_run_id
),

-- counts only: the results' examples can hold student values
validation as (
    select
        sync_run_id,
        count(*) filter (where not success and severity = 'critical') as validation_rules_failed,
        count(*) filter (where not success and severity <> 'critical') as validation_warnings
    from {{ source('clever_landing', 'validation_results') }}
    group by sync_run_id
),

summaries as (
    select
        sync_run_id,
        status,
        created_at,
        (select coalesce(sum((h.change ->> 'added')::bigint), 0)
         from jsonb_each(summary -> 'history') as h (t, change))
            as records_added,
        (select coalesce(sum((h.change ->> 'changed')::bigint), 0)
         from jsonb_each(summary -> 'history') as h (t, change))
            as records_changed,
        (select coalesce(sum((h.change ->> 'archived')::bigint), 0)
         from jsonb_each(summary -> 'history') as h (t, change))
            as records_archived,
        (select coalesce(sum((h.change ->> 'restored')::bigint), 0)
         from jsonb_each(summary -> 'history') as h (t, change))
            as records_restored
    from {{ source('clever_landing', 'run_summaries') }}
),

classified as (
    select
        r.*,
        s.status as summary_status,
        s.created_at as summarized_at,
        s.records_added, s.records_changed, s.records_archived, s.records_restored,
        case
            when s.status is not null then s.status
            when r.status = 'failed' then 'failed'
            else 'running'
        end as outcome
    from runs as r
    left join summaries as s on s.sync_run_id = r.sync_run_id
)

select
    c.sync_run_id,
    c.district_slug,
    c.integration,
    c.api_version,
    c.mode as sync_mode,
    c.external_run_id as airflow_run_id,
    c.outcome,
    c.status as extraction_status,
    case
        when c.outcome <> 'failed' then null
        when c.error like 'incomplete endpoints%' then 'extract'
        when split_part(c.error, ':', 1) in ('validate', 'approve', 'build', 'abandoned')
            then split_part(c.error, ':', 1)
        else 'unknown'
    end as failed_step,
    c.started_at,
    c.finished_at as extraction_finished_at,
    c.summarized_at as finished_at,
    extract(epoch from (c.finished_at - c.started_at))::numeric(12, 1) as extraction_seconds,
    extract(epoch from (c.summarized_at - c.started_at))::numeric(12, 1) as duration_seconds,
    cardinality(c.endpoints) as endpoints_requested,
    coalesce(e.endpoints_completed, 0) as endpoints_completed,
    coalesce(e.endpoints_failed, 0) as endpoints_failed,
    coalesce(e.failed_endpoints, '{}') as failed_endpoints,
    coalesce(e.out_of_scope_endpoints, '{}') as out_of_scope_endpoints,
    coalesce(e.rows_landed, 0) as rows_landed,
    coalesce(e.pages_read, 0) as pages_read,
    e.events_read,
    coalesce(g.guard_trips, 0) as guard_trips,
    coalesce(g.guard_overrides, 0) as guard_overrides,
    coalesce(g.guard_tripped_data_types, '{}') as guard_tripped_data_types,
    coalesce(q.quarantined_records, 0) as quarantined_records,
    coalesce(v.validation_rules_failed, 0) as validation_rules_failed,
    coalesce(v.validation_warnings, 0) as validation_warnings,
    c.records_added,
    c.records_changed,
    c.records_archived,
    c.records_restored,
    coalesce((c.params ->> 'allow_mass_archive')::boolean, false) as allow_mass_archive,
    coalesce((c.params ->> 'full_refresh')::boolean, false) as full_refresh
from classified as c
left join endpoints as e on e.sync_run_id = c.sync_run_id
left join guard as g on g.sync_run_id = c.sync_run_id
left join quarantined as q on q.sync_run_id = c.sync_run_id
left join validation as v on v.sync_run_id = c.sync_run_id
