{# The records of the latest *approved* extraction of an endpoint, per district.
   A run's extraction is approved only after it completed, passed validation and the
   mass-archive guard (clever.pipeline.approve). Snapshots read nothing else, so a
   failed, partial or unapproved run can never archive a record, and one district's run
   only ever sees other districts' already-snapshotted data (a no-op for them).

   The records are those of the district's full extraction (base_run_id; for a district
   synced in full, its latest run), with, for an events district, the changes approved
   events runs made since over them (clever_landing.applied_changes): a changed record's
   latest version from its events run, and a deleted one left out (archived by its
   deletion event, clever.events).

   A record quarantined by validation (it broke a rule Clever guarantees) is replaced by
   its last clean version from an earlier approved extraction, so quarantine never
   archives anything; a record with no clean version left (never seen clean, or pruned by
   landing retention after it was archived) is left out until Clever sends one. (An
   events run's quarantined change is never applied: the record keeps its version.)

   Written without WITH, and the staging views select from it as a subquery: PostgreSQL
   cannot flatten a subquery that has a WITH clause into the query around it, and then
   computes every column of every record before joining. Flat, a snapshot that looks up
   a few changed keys (or the rosters of a few changed sections) computes the staging
   columns of those records only. #}
{% macro current_records(endpoint) %}
select
    c.district_slug,
    l.district_id,
    l.clever_id,
    l.sync_run_id,
    c.base_synced_at as synced_at,
    l.raw,
    md5(l.raw::text) as record_hash
from {{ source('clever_landing', endpoint) }} as l
join {{ ref('stg_clever__current_extractions') }} as c
  on c.base_run_id = l.sync_run_id and c.endpoint = '{{ endpoint }}'
where l.clever_id is not null
  and not exists (select 1 from {{ source('clever_landing', 'quarantine') }} as q
                  where q.sync_run_id = l.sync_run_id and q.endpoint = '{{ endpoint }}'
                    and q.clever_id = l.clever_id)
  and not exists (select 1 from {{ source('clever_landing', 'applied_changes') }} as a
                  where a.district_slug = c.district_slug and a.endpoint = '{{ endpoint }}'
                    and a.clever_id = l.clever_id and a.sync_run_id > c.base_run_id)

union all

-- changed by events since the full extraction: the latest version
select
    a.district_slug,
    l.district_id,
    l.clever_id,
    l.sync_run_id,
    a.synced_at,
    l.raw,
    md5(l.raw::text) as record_hash
from {{ source('clever_landing', 'applied_changes') }} as a
join {{ ref('stg_clever__current_extractions') }} as c
  on c.district_slug = a.district_slug and c.endpoint = '{{ endpoint }}' and a.sync_run_id > c.base_run_id
join {{ source('clever_landing', endpoint) }} as l
  on l.sync_run_id = a.sync_run_id and l.clever_id = a.clever_id
where a.endpoint = '{{ endpoint }}' and not a.deleted

union all

-- quarantined now: the last clean version from an earlier approved extraction
select
    carried.district_slug,
    carried.district_id,
    carried.clever_id,
    carried.sync_run_id,
    carried.synced_at,
    carried.raw,
    md5(carried.raw::text) as record_hash
from ({{ carried_records(endpoint) }}) as carried
{% endmacro %}

{# Per district, the last clean version (from an earlier approved extraction) of each
   record quarantined in the current full extraction and not changed by events since.
   Landing retention (clever.retention) keeps these rows, through the view
   stg_clever__carried_records. #}
{% macro carried_records(endpoint) %}
    -- the DISTINCT ON columns as output (q.clever_id = l.clever_id), so that a filter on
    -- the record's key is applied inside (a snapshot looking up a few keys)
    select distinct on (c.district_slug, q.clever_id)
        c.district_slug, l.district_id, q.clever_id, l.sync_run_id, a.synced_at, l.raw
    from (select distinct sync_run_id, clever_id from {{ source('clever_landing', 'quarantine') }}
          where endpoint = '{{ endpoint }}' and clever_id is not null) as q
    join {{ ref('stg_clever__current_extractions') }} as c
      on c.base_run_id = q.sync_run_id and c.endpoint = '{{ endpoint }}'
    join {{ source('clever_landing', 'approved_extractions') }} as a
      on a.district_slug = c.district_slug and a.endpoint = '{{ endpoint }}' and a.sync_run_id < q.sync_run_id
    join {{ source('clever_landing', endpoint) }} as l
      on l.sync_run_id = a.sync_run_id and l.clever_id = q.clever_id
    where not exists (select 1 from {{ source('clever_landing', 'quarantine') }} as earlier
                      where earlier.sync_run_id = a.sync_run_id and earlier.endpoint = '{{ endpoint }}'
                        and earlier.clever_id = l.clever_id)
      and not exists (select 1 from {{ source('clever_landing', 'applied_changes') }} as changed
                      where changed.district_slug = c.district_slug and changed.endpoint = '{{ endpoint }}'
                        and changed.clever_id = q.clever_id and changed.sync_run_id > c.base_run_id)
    order by c.district_slug, q.clever_id, a.sync_run_id desc
{% endmacro %}

{# The columns a Clever endpoint's staging model starts with, as current_records gives
   them: the record's keys, the approved run it comes from, its hash and its JSON.
   district_id: the expression for the record's district (a district is its own). #}
{% macro record_columns(district_id='district_id') -%}
    district_slug,
    clever_id,
    {{ district_id }}{% if district_id != 'district_id' %} as district_id{% endif %},
    sync_run_id,
    synced_at,
    record_hash,
    raw
{%- endmacro %}
