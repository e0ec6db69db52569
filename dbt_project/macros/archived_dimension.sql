{# Current state of every record a snapshot has ever held, in two parts:

   archived_state (an incremental table in clever_intermediate, int_state__*): per key,
   the current version's columns and
   - is_archived / archived_at: the latest version is a dbt deletion row
     (dbt_is_deleted = 'True'); archived_at is when the sync that found it missing ran;
   - first_seen_at: start of the first approved extraction that returned the record;
   - archived_last_seen_at: for an archived record, the approved extraction before the
     one that archived it;
   - version_valid_from / version_sync_run_id: the current version;
   - snapshot_updated_at: the snapshot time of the key's latest version.
   A build recomputes only the keys with a version written since the table's latest
   snapshot_updated_at for the key's district (a snapshot's rows are never changed
   afterwards except for dbt_valid_to, which a new version of the same key sets), so a
   quiet day rewrites a few thousand rows, not millions. Each district has its own mark:
   districts build at their own times, side by side. A district-scoped build reads and
   writes only its districts' rows. `full_refresh` rebuilds it from the snapshot.

   archived_dimension (the mart, a view in clever_marts): those columns plus last_seen_at,
   which for an active record is its district's current approved extraction and so
   changes for every active record at every sync: it is joined when read, not stored.
   Snapshot times are UTC (dbt runs with PGTZ=UTC); they are exposed as timestamptz. A
   restored record's latest version is a 'False' row again: is_archived = false, same key,
   and the archived period stays in the snapshot. #}

{% macro archived_state(snapshot_name, endpoint, keys=['district_slug', 'clever_id']) %}
{% set relation = ref(snapshot_name) %}
{% set internal = ['dbt_scd_id', 'dbt_updated_at', 'dbt_valid_from', 'dbt_valid_to', 'dbt_is_deleted',
                   'raw', 'record_hash', 'synced_at', 'sync_run_id'] %}
{% set columns = [] %}
{% if execute %}
  {% for column in adapter.get_columns_in_relation(relation) %}
    {% if column.name not in internal %}{% do columns.append(column.name) %}{% endif %}
  {% endfor %}
{% endif %}
{% set key_list = keys | join(', ') %}
{{ require_incremental_when_scoped() }}
with
{% if is_incremental() %}
-- keys with a version written since the district's last build: a snapshot commits all
-- its rows at one time before this model runs, so those of the latest time here were
-- all counted (dbt_valid_from is the snapshot time that wrote a version, as dbt_updated_at)
{% set covered_until = district_watermark_literal(this, 'snapshot_updated_at') %}
changed_keys as (
    select distinct {% for key in keys %}s.{{ key }}{% if not loop.last %}, {% endif %}{% endfor %}
    from {{ relation }} as s
    {% if covered_until is not none %}
    where s.district_slug = '{{ single_district_build() }}' and s.dbt_valid_from > {{ covered_until }}
    {% else %}
    left join ({{ district_watermarks(this, 'snapshot_updated_at') }}) as c on c.district_slug = s.district_slug
    where {{ in_build_scope('s.district_slug') }}
      and s.dbt_valid_from > coalesce(c.covered_until, '-infinity')
    {% endif %}
),
{% endif %}

history as (
    select * from {{ relation }}
    where {{ in_build_scope('district_slug') }}
    {% if is_incremental() %}
      and ({{ key_list }}) in (select {{ key_list }} from changed_keys)
    {% endif %}
),

-- each version with its key's first sighting and latest version, in one pass (a window,
-- not a join of history with itself, which a district's build, planned with nested
-- loops allowed, could run as a loop over a loop)
versions as (
    select
        *,
        min(synced_at) over key_versions as key_first_seen_at,
        max(dbt_updated_at) over key_versions as key_snapshot_updated_at
    from history
    window key_versions as (partition by {{ key_list }})
),

current_version as (
    select * from versions where dbt_valid_to is null
),

approvals as (
    select
        district_slug,
        approved_at,
        lag(synced_at) over (partition by district_slug order by approved_at, sync_run_id) as previous_synced_at
    from {{ source('clever_landing', 'approved_extractions') }}
    where endpoint = '{{ endpoint }}' and {{ in_build_scope('district_slug') }}
)

select
    {% for column in columns %}cv.{{ adapter.quote(column) }},
    {% endfor -%}
    cv.dbt_is_deleted = 'True' as is_archived,
    case when cv.dbt_is_deleted = 'True' then cv.dbt_valid_from at time zone 'UTC' end as archived_at,
    cv.key_first_seen_at as first_seen_at,
    case when cv.dbt_is_deleted = 'True' then (
        select a.previous_synced_at
        from approvals as a
        where a.district_slug = cv.district_slug and a.approved_at <= cv.dbt_valid_from at time zone 'UTC'
        order by a.approved_at desc
        limit 1)
    end as archived_last_seen_at,
    cv.dbt_valid_from at time zone 'UTC' as version_valid_from,
    cv.sync_run_id as version_sync_run_id,
    cv.key_snapshot_updated_at as snapshot_updated_at
from current_version as cv
{% endmacro %}


{# lineages: {output column: [ID column, data type]}: the lineage (the first Clever ID of a
   linked line of reissues, int_reissue__lineage) of the record an ID column names, the
   ID itself when it is in no linked line; after the lifecycle columns, joined when read. #}
{% macro archived_dimension(state_model, endpoint, lineages={}) %}
{% set relation = ref(state_model) %}
{% set lifecycle = ['is_archived', 'archived_at', 'first_seen_at', 'archived_last_seen_at', 'version_valid_from',
                    'version_sync_run_id', 'snapshot_updated_at'] %}
{% set columns = [] %}
{% if execute %}
  {% for column in adapter.get_columns_in_relation(relation) %}
    {% if column.name not in lifecycle %}{% do columns.append(column.name) %}{% endif %}
  {% endfor %}
{% endif %}
select
    {% for column in columns %}s.{{ adapter.quote(column) }},
    {% endfor -%}
    s.is_archived,
    s.archived_at,
    s.first_seen_at,
    case when s.is_archived then s.archived_last_seen_at else ce.synced_at end as last_seen_at,
    s.version_valid_from,
    s.version_sync_run_id
    {%- for name, source in lineages.items() %},
    coalesce(lineage_{{ loop.index }}.lineage_id, s.{{ source[0] }}) as {{ name }}
    {%- endfor %}
from {{ relation }} as s
left join (
    select district_slug, synced_at
    from {{ ref('stg_clever__current_extractions') }}
    where endpoint = '{{ endpoint }}'
) as ce
  on ce.district_slug = s.district_slug
{% for name, source in lineages.items() %}
left join {{ ref('int_reissue__lineage') }} as lineage_{{ loop.index }}
  on lineage_{{ loop.index }}.district_slug = s.district_slug and lineage_{{ loop.index }}.data_type = '{{ source[1] }}'
 and lineage_{{ loop.index }}.clever_id = s.{{ source[0] }}
{% endfor %}
{% endmacro %}


{# A district's build (one district in scope): the latest value of `column` in `relation`
   for it, read now (dbt compiles a model just before running it) and written into the
   SQL as a constant, '-infinity' when nothing is covered (or a scoped full refresh, unless
   `full_refresh_uncovers` is false). As a constant the planner reads the few versions
   above it through the snapshot's (district_slug, dbt_valid_from) index and estimates
   them from the index's end, instead of scanning every version of the district to
   compare each with a joined value. None for other builds (several districts, or the
   deploy): they join district_watermarks. #}
{% macro district_watermark_literal(relation, column, full_refresh_uncovers=true) %}
    {%- set slug = single_district_build() -%}
    {%- if slug is none -%}{{ return(none) }}{%- endif -%}
    {%- if full_refresh_uncovers and scoped_full_refresh() -%}{{ return("'-infinity'::timestamp") }}{%- endif -%}
    {%- if not has_column(relation, column) -%}{{ return("'-infinity'::timestamp") }}{%- endif -%}
    {%- set found = run_query("select max(" ~ column ~ ")::text from " ~ relation
                              ~ " where district_slug = '" ~ slug ~ "'") -%}
    {%- set value = found.rows[0][0] if found.rows | length else none -%}
    {{ return("'" ~ (value or '-infinity') ~ "'::timestamp") }}
{% endmacro %}


{# Per district of the build, the latest value of `column` in `relation` (how far an
   incremental table covers that district; nothing when the table has no such column
   yet: the first build after an upgrade that added it recomputes every row). Scoped: one
   index probe per district; with a scoped full refresh, nothing is covered (unless
   `full_refresh_uncovers` is false), so the districts' rows are all recomputed. #}
{% macro district_watermarks(relation, column, full_refresh_uncovers=true) %}
    {%- set scope = build_scope() -%}
    {%- if not has_column(relation, column) -%}
    select null::text as district_slug, null::timestamp as covered_until where false
    {%- elif scope is not none and full_refresh_uncovers and scoped_full_refresh() -%}
    select district_slug, null::timestamp as covered_until
    from (values {% for slug in scope %}('{{ slug }}'){% if not loop.last %}, {% endif %}{% endfor %}) as s(district_slug)
    {%- elif scope is none -%}
    select district_slug, max({{ column }}) as covered_until from {{ relation }} group by district_slug
    {%- else -%}
    {%- for slug in scope %}
    select '{{ slug }}'::text as district_slug,
           (select max({{ column }}) from {{ relation }} where district_slug = '{{ slug }}') as covered_until
    {% if not loop.last %}union all{% endif %}
    {%- endfor -%}
    {%- endif -%}
{% endmacro %}


{# Whether `relation` has `column` (an incremental table from before the column was
   added: dbt appends it only after the model's query ran). #}
{% macro has_column(relation, column) %}
    {%- if not execute -%}{{ return(true) }}{%- endif -%}
    {{ return(column in (adapter.get_columns_in_relation(relation) | map(attribute='name') | list)) }}
{% endmacro %}


{# In an incremental model keyed on users (the people and roles): the rows of `relation`
   (a table with district_slug and snapshot_updated_at) of the build's districts versioned
   past how far this model covers their district. #}
{% macro versioned_since_covered(relation) %}
    {%- set covered_until = district_watermark_literal(this, 'snapshot_updated_at') -%}
    select v.* from {{ relation }} as v
    {%- if covered_until is none %}
    left join ({{ district_watermarks(this, 'snapshot_updated_at') }}) as c on c.district_slug = v.district_slug
    {%- endif %}
    where {{ in_build_scope('v.district_slug') }}
      and v.snapshot_updated_at > {{ covered_until if covered_until is not none
                                     else "coalesce(c.covered_until, '-infinity')" }}
{% endmacro %}
