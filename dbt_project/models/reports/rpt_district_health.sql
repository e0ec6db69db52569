{# District health, one row per district that ever started a sync: its last run, last
   success, last failure and its step, when its data was last approved and whether that is
   stale (its schedule's longest gap plus a margin, from config/districts.yml, written by
   each run's start), the last run's quarantined records and guard holds, and Clever's own
   sync state for the district, and its connection (clever.registry: discovered or configured,
   connected or disconnected and why), also for a district that never synced yet.
   integration is the district's as configured at its last run's start (an sso district has
   no rosters: dashboards leave it out of roster checks). A live view: an on-call dashboard
   reads it as it is. #}
with runs as (
    select * from {{ ref('rpt_sync_runs') }}
),

last_run as (
    select distinct on (district_slug) *
    from runs
    order by district_slug, sync_run_id desc
),

last_success as (
    select district_slug, max(finished_at) as last_success_at
    from runs where outcome = 'succeeded'
    group by district_slug
),

last_failure as (
    select distinct on (district_slug) district_slug, started_at as last_failure_at, failed_step as last_failed_step
    from runs where outcome = 'failed'
    order by district_slug, sync_run_id desc
),

approvals as (
    select district_slug, max(approved_at) as last_approved_at
    from {{ source('clever_landing', 'approved_extractions') }}
    group by district_slug
),

connections as (
    select * from {{ source('clever_landing', 'district_connections') }}
),

districts as (
    select district_slug from last_run
    union
    select district_slug from connections
),

clever_state as (
    select distinct on (district_slug) district_slug, sync_state, pause_start, pause_end
    from {{ ref('dim_districts') }}
    where not is_archived
    order by district_slug, clever_id
)

select
    k.district_slug,
    coalesce(d.integration, r.integration) as integration,
    r.sync_run_id as last_sync_run_id,
    r.started_at as last_run_started_at,
    r.outcome as last_run_outcome,
    s.last_success_at,
    f.last_failure_at,
    f.last_failed_step,
    a.last_approved_at,
    extract(epoch from (clock_timestamp() - a.last_approved_at))::numeric / 3600 as hours_since_approval,
    d.stale_after_hours,
    d.stale_after_hours is not null
        and (a.last_approved_at is null
             or clock_timestamp() - a.last_approved_at > make_interval(secs => d.stale_after_hours * 3600))
        as is_stale,
    d.stale_alerted_at,
    r.quarantined_records as last_run_quarantined_records,
    r.guard_trips as last_run_guard_trips,
    r.guard_tripped_data_types as last_run_guard_tripped_data_types,
    c.sync_state as clever_sync_state,
    c.pause_start as clever_pause_start,
    c.pause_end as clever_pause_end,
    coalesce(n.status, 'connected') as connection_status,
    n.source as connection_source,
    n.clever_district_id,
    n.reason as disconnect_reason,
    n.disconnected_at,
    n.archived_at as archived_on_disconnect_at
from districts as k
left join last_run as r on r.district_slug = k.district_slug
left join last_success as s on s.district_slug = k.district_slug
left join last_failure as f on f.district_slug = k.district_slug
left join approvals as a on a.district_slug = k.district_slug
left join {{ source('clever_landing', 'district_settings') }} as d on d.district_slug = k.district_slug
left join clever_state as c on c.district_slug = k.district_slug
left join connections as n on n.district_slug = k.district_slug
