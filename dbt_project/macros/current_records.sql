{# The records of the latest *approved* extraction of an endpoint, per district.
   A run's extraction is approved only after it completed, passed validation and the
   mass-archive guard (clever.pipeline.approve). Snapshots read nothing else, so a failed,
   partial or unapproved run can never archive a record, and one district's run only
   ever sees other districts' already-snapshotted data (a no-op for them). #}
{% macro current_records(endpoint) %}
select distinct on (c.district_slug, l.clever_id)
    c.district_slug,
    l.district_id,
    l.clever_id,
    l.sync_run_id,
    c.synced_at,
    l.raw,
    md5(l.raw::text) as record_hash
from {{ source('clever_landing', endpoint) }} as l
join {{ ref('stg_clever__current_extractions') }} as c
  on c.sync_run_id = l.sync_run_id
 and c.endpoint = '{{ endpoint }}'
where l.clever_id is not null
order by c.district_slug, l.clever_id
{% endmacro %}
