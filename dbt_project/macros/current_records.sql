{# The records of the latest *approved* extraction of an endpoint, per district.
   A run's extraction is approved only after it completed, passed validation and the
   mass-archive guard (clever.pipeline.approve). Snapshots read nothing else, so a
   failed, partial or unapproved run can never archive a record, and one district's run
   only ever sees other districts' already-snapshotted data (a no-op for them).

   A record quarantined by validation (it broke a rule Clever guarantees) is replaced by
   its last clean version from an earlier approved extraction, so quarantine never
   archives anything; a record never seen clean before is left out until it is. #}
{% macro current_records(endpoint) %}
with current_runs as (
    select district_slug, sync_run_id, synced_at
    from {{ ref('stg_clever__current_extractions') }}
    where endpoint = '{{ endpoint }}'
),

quarantined as (
    select distinct q.sync_run_id, q.clever_id
    from {{ source('clever_landing', 'quarantine') }} as q
    join current_runs as c on c.sync_run_id = q.sync_run_id
    where q.endpoint = '{{ endpoint }}' and q.clever_id is not null
),

clean as (
    select c.district_slug, l.district_id, l.clever_id, l.sync_run_id, c.synced_at, l.raw
    from {{ source('clever_landing', endpoint) }} as l
    join current_runs as c on c.sync_run_id = l.sync_run_id
    where l.clever_id is not null
      and not exists (select 1 from quarantined as q
                      where q.sync_run_id = l.sync_run_id and q.clever_id = l.clever_id)
),

carried_forward as (
    select distinct on (c.district_slug, q.clever_id)
        c.district_slug, l.district_id, l.clever_id, l.sync_run_id, a.synced_at, l.raw
    from quarantined as q
    join current_runs as c on c.sync_run_id = q.sync_run_id
    join {{ source('clever_landing', 'approved_extractions') }} as a
      on a.district_slug = c.district_slug and a.endpoint = '{{ endpoint }}' and a.sync_run_id < q.sync_run_id
    join {{ source('clever_landing', endpoint) }} as l
      on l.sync_run_id = a.sync_run_id and l.clever_id = q.clever_id
    where not exists (select 1 from {{ source('clever_landing', 'quarantine') }} as earlier
                      where earlier.sync_run_id = a.sync_run_id and earlier.endpoint = '{{ endpoint }}'
                        and earlier.clever_id = l.clever_id)
    order by c.district_slug, q.clever_id, a.sync_run_id desc
)

select
    district_slug,
    district_id,
    clever_id,
    sync_run_id,
    synced_at,
    raw,
    md5(raw::text) as record_hash
from (
    select * from clean
    union all
    select * from carried_forward
) as records
{% endmacro %}
