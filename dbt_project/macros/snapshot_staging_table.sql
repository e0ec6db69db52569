{# The rows a snapshot merge applies: dbt's own default__snapshot_staging_table, computed
   from the keys and check columns first. dbt's version joins the full source with the
   current snapshot four times (insertions, updates, deletes, deletion records); at a
   million users and five million enrolments that was most of a sync. Here:

   1. keys and check columns only (for users: the key and md5 of the raw JSON, none of the
      staging view's typed columns) are compared in one full outer join, which classifies
      each key as new, changed or gone;
   2. only the keys that are new or changed are read again with every column, and only
      the gone ones are looked up in the snapshot.

   With `meta: {compare_scope: ...}` (the enrolment snapshot) step 1 is limited further
   to the keys of parent records that changed since the last snapshot: an enrolment is
   derived from its section's record alone, so when a section's record_hash is the one
   its rosters were last snapshotted from, none of its enrolments can have changed. The
   hashes snapshotted from are kept in <snapshot>__scope_hashes, rewritten in the
   snapshot's own transaction (post-hook save_compare_scope); without that table (a first
   build, or one after it was dropped) every key is compared.

   The output (columns, order and rows) is dbt's, so dbt's snapshot materialization and
   merge run unchanged. Only for what this project uses (strategy check with a list of
   check_cols, hard_deletes: new_record, no dbt_valid_to_current); anything else gets
   dbt's version. tests/integration/test_snapshot_staging.py checks the rows against dbt's. #}
{% macro postgres__snapshot_staging_table(strategy, source_sql, target_relation) -%}
    {%- set check_cols = config.get('check_cols') -%}
    {#- CLEVER_SNAPSHOT_STAGING=dbt: dbt's own SQL, for the test that compares the two -#}
    {%- if strategy.hard_deletes != 'new_record' or config.get('dbt_valid_to_current')
          or config.get('strategy') != 'check' or check_cols is string
          or env_var('CLEVER_SNAPSHOT_STAGING', 'clever') == 'dbt' -%}
        {{ return(default__snapshot_staging_table(strategy, source_sql, target_relation)) }}
    {%- endif -%}
    {%- set columns = config.get('snapshot_table_column_names') or get_snapshot_table_column_names() -%}
    {%- set new_scd_id = snapshot_hash_arguments(['gone.' ~ columns.dbt_scd_id, snapshot_get_time()]) -%}
    {%- set snapshotted_cols = get_list_of_column_names(get_columns_in_relation(target_relation)) -%}
    {%- set source_cols = get_columns_in_query(source_sql) -%}
    {%- set keys = strategy.unique_key if strategy.unique_key is not string else [strategy.unique_key] -%}
    {%- set key_names = [] -%}
    {%- if strategy.unique_key | is_list -%}
        {%- for key in keys -%}{%- do key_names.append('dbt_unique_key_' ~ loop.index) -%}{%- endfor -%}
    {%- else -%}
        {%- do key_names.append('dbt_unique_key') -%}
    {%- endif -%}
    {%- set scope = compare_scope(target_relation) %}
    with snapshot_query as not materialized (

        {{ source_sql }}

    ),

    {% if scope %}
    -- parent records (sections) whose record_hash differs from the one their children
    -- were last snapshotted from, or that appeared or disappeared since
    changed_scopes as (

        select coalesce(parent.district_slug, saved.district_slug) as district_slug,
               coalesce(parent.clever_id, saved.scope_id) as scope_id
        from (select district_slug, clever_id, record_hash from {{ ref(scope.parent) }}) as parent
        full outer join {{ scope.hashes }} as saved
          on saved.district_slug = parent.district_slug and saved.scope_id = parent.clever_id
        where parent.record_hash is distinct from saved.scope_hash

    ),
    {% endif %}

    -- the source with the key columns as dbt names them; read in full only where joined
    source_data as not materialized (

        select *, {{ unique_key_fields(strategy.unique_key) }}
        from snapshot_query
        {% if scope %}
        where (district_slug, {{ scope.column }}) in (select district_slug, scope_id from changed_scopes)
        {% endif %}

    ),

    snapshotted_data as not materialized (

        select *, {{ unique_key_fields(strategy.unique_key) }}
        from {{ target_relation }}
        where {{ columns.dbt_valid_to }} is null
        {% if scope %}
          and (district_slug, {{ scope.column }}) in (select district_slug, scope_id from changed_scopes)
        {% endif %}

    ),

    compared as (

        select
            {% for key in key_names %}coalesce(source_data.{{ key }}, snapshotted_data.{{ key }}) as {{ key }},
            {% endfor -%}
            snapshotted_data.{{ columns.dbt_scd_id }} as dbt_target_scd_id,
            snapshotted_data.{{ columns.dbt_is_deleted }} as dbt_target_is_deleted,
            case
                when {{ unique_key_is_null(strategy.unique_key, "snapshotted_data") }} then 'new'
                when {{ unique_key_is_null(strategy.unique_key, "source_data") }} then
                    case when not (snapshotted_data.{{ columns.dbt_is_deleted }} = 'True'
                                   and snapshotted_data.{{ columns.dbt_valid_to }} is null) then 'gone' end
                when {{ strategy.row_changed }} or snapshotted_data.{{ columns.dbt_is_deleted }} = 'True'
                    then 'changed'
            end as dbt_change
        from (
            select {{ key_names | join(', ') }}, {{ check_cols | join(', ') }} from source_data
        ) as source_data
        full outer join (
            select {{ key_names | join(', ') }}, {{ check_cols | join(', ') }}, {{ columns.dbt_scd_id }},
                   {{ columns.dbt_is_deleted }}, {{ columns.dbt_valid_to }}
            from snapshotted_data
        ) as snapshotted_data
            on {{ unique_key_join_on(strategy.unique_key, "snapshotted_data", "source_data") }}

    ),

    changes as materialized (

        select * from compared where dbt_change is not null

    ),

    changed_source as (

        select source_data.*, changes.dbt_change, changes.dbt_target_scd_id, changes.dbt_target_is_deleted
        from changes
        join source_data on {{ unique_key_join_on(strategy.unique_key, "changes", "source_data") }}
        where changes.dbt_change in ('new', 'changed')

    ),

    gone as (

        select snapshotted_data.*
        from changes
        join snapshotted_data on snapshotted_data.{{ columns.dbt_scd_id }} = changes.dbt_target_scd_id
        where changes.dbt_change = 'gone'

    ),

    -- typed NULLs for the source columns of the rows built from `gone`, as dbt's left join
    -- leaves them; never read
    no_source as (

        select * from source_data where false

    ),

    insertions as (

        select
            'insert' as dbt_change_type,
            {{ new_version_columns(source_cols, key_names, strategy, columns) }}
            {{ get_dbt_valid_to_current(strategy, columns) }},
            {{ strategy.scd_id }} as {{ columns.dbt_scd_id }},
            'False' as {{ columns.dbt_is_deleted }}
        from changed_source

    ),

    updates as (

        select
            'update' as dbt_change_type,
            {{ new_version_columns(source_cols, key_names, strategy, columns) }}
            {{ strategy.updated_at }} as {{ columns.dbt_valid_to }},
            dbt_target_scd_id as {{ columns.dbt_scd_id }},
            dbt_target_is_deleted as {{ columns.dbt_is_deleted }}
        from changed_source
        where dbt_change = 'changed'

    ),

    deletes as (

        select
            'delete' as dbt_change_type,
            {% for col in source_cols %}no_source.{{ adapter.quote(col) }},
            {% endfor -%}
            {% for key in key_names %}no_source.{{ key }},
            {% endfor -%}
            {{ snapshot_get_time() }} as {{ columns.dbt_valid_from }},
            {{ snapshot_get_time() }} as {{ columns.dbt_updated_at }},
            {{ snapshot_get_time() }} as {{ columns.dbt_valid_to }},
            gone.{{ columns.dbt_scd_id }},
            gone.{{ columns.dbt_is_deleted }}
        from gone
        left join no_source on false

    ),

    deletion_records as (

        select
            'insert' as dbt_change_type,
            {% for col in source_cols %}{% if col in snapshotted_cols %}gone{% else %}no_source{% endif %}.{{ adapter.quote(col) }},
            {% endfor -%}
            {% for key in key_names %}gone.{{ key }},
            {% endfor -%}
            {{ snapshot_get_time() }} as {{ columns.dbt_valid_from }},
            {{ snapshot_get_time() }} as {{ columns.dbt_updated_at }},
            gone.{{ columns.dbt_valid_to }} as {{ columns.dbt_valid_to }},
            {{ new_scd_id }} as {{ columns.dbt_scd_id }},
            'True' as {{ columns.dbt_is_deleted }}
        from gone
        left join no_source on false

    )

    select * from insertions
    union all
    select * from updates
    union all
    select * from deletes
    union all
    select * from deletion_records
{%- endmacro %}

{# A changed or new source row's columns up to dbt_valid_from, as dbt's
   insertions_source_data and updates_source_data have them. #}
{% macro new_version_columns(source_cols, key_names, strategy, columns) -%}
    {% for col in source_cols %}{{ adapter.quote(col) }}, {% endfor -%}
    {% for key in key_names %}{{ key }}, {% endfor -%}
    {{ strategy.updated_at }} as {{ columns.dbt_updated_at }},
    {{ strategy.updated_at }} as {{ columns.dbt_valid_from }},
{%- endmacro %}

{# The snapshot's `meta.compare_scope` ({column: the key column naming the parent record,
   parent: the staging model of the parents}) with the table of saved parent hashes, or
   none when the snapshot has no scope or that table does not exist yet. #}
{% macro compare_scope(target_relation) %}
    {%- set scope = snapshot_meta().get('compare_scope') -%}
    {%- if not scope -%}{{ return(none) }}{%- endif -%}
    {%- set hashes = adapter.get_relation(database=target_relation.database, schema=target_relation.schema,
                                          identifier=target_relation.identifier ~ '__scope_hashes') -%}
    {%- if hashes is none -%}{{ return(none) }}{%- endif -%}
    {{ return({'column': scope.column, 'parent': scope.parent, 'hashes': hashes}) }}
{% endmacro %}

{# Post-hook of a snapshot with a compare_scope, inside its transaction: remember the
   parent hashes its rows now reflect, so the next build compares only what changed. #}
{% macro save_compare_scope() %}
    {%- set scope = snapshot_meta().get('compare_scope') -%}
    {%- if not execute or not scope -%}{{ return('select 1') }}{%- endif -%}
    {%- set hashes = this.incorporate(path={'identifier': this.identifier ~ '__scope_hashes'}) -%}
    create table if not exists {{ hashes }} (
        district_slug text not null,
        scope_id      text not null,
        scope_hash    text not null
    );
    delete from {{ hashes }};
    insert into {{ hashes }} (district_slug, scope_id, scope_hash)
    select district_slug, clever_id, record_hash from {{ ref(scope.parent) }};
    analyze {{ hashes }}
{% endmacro %}

{% macro snapshot_meta() %}
    {{ return(config.get('meta') or model.config.get('meta') or {}) }}
{% endmacro %}
