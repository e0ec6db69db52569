-- The approved extraction each snapshot reads, per district and endpoint: the newest
-- run (approve refuses a run older than one already approved, so this is also the
-- latest approval). clever_landing.current_extractions holds one row each, kept by a
-- trigger on the approvals log, so this view reads a row per district and endpoint
-- rather than every approval ever made. For an events district (clever.events) the
-- records come from the full extraction base_run_id with the changes approved since
-- (clever_landing.applied_changes) over it.
select
    district_slug,
    endpoint,
    sync_run_id,
    synced_at,
    approved_at,
    base_run_id,
    base_synced_at,
    events_cursor
from {{ source('clever_landing', 'current_extractions') }}
