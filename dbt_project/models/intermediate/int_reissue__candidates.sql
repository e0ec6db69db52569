{{ config(materialized='incremental',
          unique_key=['district_slug', 'data_type', 'old_clever_id', 'new_clever_id'],
          incremental_strategy='delete+insert', on_schema_change='append_new_columns') }}
{# Records Clever may have reissued under a new ID (macros/reissued_ids.sql), per district
   and snapshot: a record the snapshot archived (it went missing from the approved
   extraction) paired with a record it saw for the first time in that same snapshot, of
   the same data type and with the same identifying data. One snapshot applies one sync's
   extraction (with events: one events run's changes), and all its rows share its time.

   Incremental: a build reads only the versions the snapshots wrote since the district's
   last scan (int_reissue__scanned, through the snapshots' (district_slug, dbt_valid_from)
   index), and only at the times something was archived does it look for new keys, so a
   first sync or a quiet day costs next to nothing. int_reissue__scanned is written after
   this model (it depends on it), so it is read here by name, not ref(): a build that
   stops in between scans the same versions again, which gives the same rows.
   A pair never changes once found (snapshot history is written once); whether it is
   linked is decided at every build, in rpt_reissued_ids. #}
{{ require_incremental_when_scoped() }}
{%- set scanned = reissue_scanned_relation() %}
with scanned as (
    {% if scanned is not none %}
    select district_slug, data_type, scanned_through from {{ scanned }} where {{ in_build_scope('district_slug') }}
    {% else %}
    select null::text as district_slug, null::text as data_type, null::timestamp as scanned_through where false
    {% endif %}
),

{% for data_type, snapshot, _ in reissue_data_types() %}
-- what the snapshot wrote since the district's last scan, read through its index when used
{{ data_type }}_versions as not materialized (
    {{ reissue_versions_since_scan(ref(snapshot), data_type, 'scanned') }}
),

{{ data_type }}_archive_times as (
    select distinct district_slug, dbt_valid_from from {{ data_type }}_versions where dbt_is_deleted = 'True'
),

-- 'old': archived by a snapshot; 'new': a key's first version, written by a snapshot that
-- archived something (looked up by that time: a first sync archives nothing, reads nothing)
{{ data_type }}_turnover as not materialized (
    select *, 'old' as side
    from {{ data_type }}_versions
    where dbt_is_deleted = 'True'
    union all
    select v.*, 'new'
    from {{ data_type }}_archive_times as t
    join {{ ref(snapshot) }} as v on v.district_slug = t.district_slug and v.dbt_valid_from = t.dbt_valid_from
    where v.dbt_is_deleted = 'False'
      and not exists (
          select 1 from {{ ref(snapshot) }} as earlier
          where earlier.district_slug = v.district_slug and earlier.clever_id = v.clever_id
            and earlier.dbt_valid_from < v.dbt_valid_from)
),

{{ data_type }}_keys as (
    {{ reissue_identity_keys(data_type, data_type ~ '_turnover') }}
),

{% endfor %}
identity_keys as (
    {% for data_type, _, _ in reissue_data_types() %}
    select '{{ data_type }}'::text as data_type, k.* from {{ data_type }}_keys as k
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

pairs as (
    select
        o.district_slug,
        o.data_type,
        o.clever_id as old_clever_id,
        n.clever_id as new_clever_id,
        array_agg(distinct o.matched_on order by o.matched_on) as matched_on,
        min(n.sync_run_id) as sync_run_id,
        o.dbt_valid_from
    from identity_keys as o
    join identity_keys as n
      on n.district_slug = o.district_slug and n.data_type = o.data_type
     and n.dbt_valid_from = o.dbt_valid_from and n.key = o.key and n.side = 'new'
    where o.side = 'old'
    group by o.district_slug, o.data_type, o.clever_id, n.clever_id, o.dbt_valid_from
)

select
    district_slug,
    data_type,
    old_clever_id,
    new_clever_id,
    matched_on,
    sync_run_id,
    dbt_valid_from at time zone 'UTC' as detected_at,
    count(*) over (partition by district_slug, data_type, dbt_valid_from, old_clever_id) as candidates_for_old,
    count(*) over (partition by district_slug, data_type, dbt_valid_from, new_clever_id) as candidates_for_new
from pairs
