{# Sync health per run and endpoint: status, rows, pages, duration and throughput, and
   the kind of failure. Like rpt_sync_runs a view over clever_landing's run tracking,
   readable by clever_bi through its owner's privileges, without error texts. #}
select
    er.sync_run_id,
    r.district_slug,
    r.integration,
    r.api_version,
    er.endpoint,
    er.status,
    er.row_count as rows_landed,
    er.page_count as pages_read,
    er.started_at,
    er.finished_at,
    extract(epoch from (er.finished_at - er.started_at))::numeric(12, 1) as duration_seconds,
    case when er.finished_at > er.started_at
         then (er.row_count / extract(epoch from (er.finished_at - er.started_at)))::numeric(14, 1)
    end as rows_per_second,
    case
        when er.error is null then null
        when er.status = 'out_of_scope' then 'out_of_scope'
        when er.error like '%rejected this district''s token%' or er.error like '%no API token%' then 'auth'
        when er.error like '%gave up after%' then 'retries_exhausted'
        when er.error like '%warehouse error%' then 'warehouse'
        when er.error like 'abandoned%' then 'abandoned'
        else 'bad_response'
    end as error_kind
from {{ source('clever_landing', 'endpoint_runs') }} as er
join {{ source('clever_landing', 'sync_runs') }} as r on r.sync_run_id = er.sync_run_id
