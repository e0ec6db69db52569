{# Two materializations for tables every district shares, so that district builds can run
   side by side and each costs its own data (macros/build_scope.sql):

   district_partition: a table whose rows each belong to one district (district_slug).
     A district-scoped build recomputes only its districts' rows: the model's output for
     them goes to a temporary table, their old rows are deleted and the new ones inserted,
     in one transaction (BI keeps reading the old rows until it commits). The model's SQL
     filters its own reads on the scope so it computes only those districts; the output is
     filtered again here, so a row of another district can never be written. With
     `unique_key`, a row that moved in from another district (an app record whose
     district link changed) is taken over: its old copy is deleted wherever it was.

   shared_table: a small table computed across districts (the district-level matching:
     one app district may be claimed by several Clever districts). Every build rewrites it
     whole, holding a lock that makes concurrent builds take turns for this one table;
     readers are never blocked.

   Unscoped (the deploy build, which holds the warehouse alone) both rebuild the whole
   table: rows replaced in one transaction when its columns are unchanged, otherwise a new
   table swapped in as dbt's table materialization does. A scoped build never creates or
   alters a table: the deploy does (clever.dbt_runner deploys a changed project first). #}

{% materialization district_partition, adapter='postgres' %}
    {{ return(clever_shared_materialization(partitioned=true)) }}
{% endmaterialization %}

{% materialization shared_table, adapter='postgres' %}
    {{ return(clever_shared_materialization(partitioned=false)) }}
{% endmaterialization %}

{% macro clever_shared_materialization(partitioned) %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set scope = build_scope() -%}
    {%- if scope is none or existing_relation is none -%}
        {%- if scope is not none -%}
            {{ exceptions.raise_compiler_error(
                "table " ~ target_relation ~ " does not exist: the warehouse has not been deployed with this dbt "
                ~ "project (clever.dbt_runner deploys it before the first district build)") }}
        {%- endif -%}
        {{ return(clever_rebuild_whole_table(existing_relation, target_relation, partitioned)) }}
    {%- endif -%}

    {%- set column_list = quoted_columns(adapter.get_columns_in_relation(existing_relation)
                                         | map(attribute='name') | list) -%}
    {%- set staged = adapter.quote(target_relation.identifier ~ '__dbt_scope') -%}
    {%- set unique_key = config.get('unique_key') -%}
    {%- set unique_key = [unique_key] if unique_key is string else unique_key -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% call statement('main') -%}
        {% if partitioned %}
        create temporary table {{ staged }} on commit drop as
        select {{ column_list }} from (
            {{ sql }}
        ) as model_rows
        where {{ in_build_scope('model_rows.district_slug') }};
        delete from {{ target_relation }} where {{ in_build_scope('district_slug') }};
        {% if unique_key %}
        delete from {{ target_relation }}
        where ({{ unique_key | join(', ') }}) in (select {{ unique_key | join(', ') }} from {{ staged }});
        {% endif %}
        insert into {{ target_relation }} ({{ column_list }}) select {{ column_list }} from {{ staged }};
        {% else %}
        lock table {{ target_relation }} in share row exclusive mode;
        delete from {{ target_relation }};
        insert into {{ target_relation }} ({{ column_list }})
        select {{ column_list }} from (
            {{ sql }}
        ) as model_rows;
        {% endif %}
    {%- endcall %}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}
{% endmacro %}

{# The unscoped path: the whole table, under the deploy build's exclusive lock. #}
{% macro clever_rebuild_whole_table(existing_relation, target_relation, partitioned) %}
    {%- set grant_config = config.get('grants') -%}
    {%- set model_columns = get_columns_in_query(sql) | list -%}
    {%- set same_columns = existing_relation is not none and existing_relation.is_table
        and (adapter.get_columns_in_relation(existing_relation) | map(attribute='name') | list) == model_columns -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% if same_columns %}
        {%- set column_list = quoted_columns(model_columns) -%}
        {% call statement('main') -%}
            delete from {{ target_relation }};
            insert into {{ target_relation }} ({{ column_list }}) select {{ column_list }} from (
                {{ sql }}
            ) as model_rows;
        {%- endcall %}
        {% set backup_relation = none %}
    {% else %}
        {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
        {%- set backup_relation = make_backup_relation(target_relation, 'table' if existing_relation is none
                                                                       else existing_relation.type) -%}
        {{ drop_relation_if_exists(load_cached_relation(intermediate_relation)) }}
        {{ drop_relation_if_exists(load_cached_relation(backup_relation)) }}
        {% call statement('main') -%}
            {{ get_create_table_as_sql(False, intermediate_relation, sql) }}
        {%- endcall %}
        {% if existing_relation is not none %}
            {{ adapter.rename_relation(existing_relation, backup_relation) }}
        {% endif %}
        {{ adapter.rename_relation(intermediate_relation, target_relation) }}
    {% endif %}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {% do apply_grants(target_relation, grant_config, should_revoke=should_revoke(existing_relation,
                                                                                  full_refresh_mode=True)) %}
    {{ adapter.commit() }}
    {% if backup_relation is not none %}
        {{ drop_relation_if_exists(backup_relation) }}
    {% endif %}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}
{% endmacro %}

{# Post-hook of every table model: its indexes, then fresh statistics if it changed. #}
{% macro table_maintenance() %}
    {%- if config.get('materialized') not in ('district_partition', 'shared_table', 'incremental', 'table') -%}
        {{ return('select 1') }}
    {%- endif -%}
    {{ ensure_indexes(table_indexes()) }};
    {{ analyze_if_changed() }}
{% endmacro %}

{# A table's indexes: its district, when a scoped build deletes and reads by it; its
   unique key (a partition takes over a row that moved in, an incremental model merges
   by it), unique unless meta `unique_key_groups_rows` (the key names a group of rows
   replaced together: a user's roles); then any in meta `indexes`. #}
{% macro table_indexes() %}
    {%- set indexes = [] -%}
    {%- if config.get('materialized') == 'district_partition' -%}
        {%- do indexes.append({'columns': ['district_slug']}) -%}
    {%- endif -%}
    {%- set unique_key = config.get('unique_key') -%}
    {%- if unique_key -%}
        {%- do indexes.append({'columns': [unique_key] if unique_key is string else unique_key,
                               'unique': not (config.get('meta') or {}).get('unique_key_groups_rows', false)}) -%}
    {%- endif -%}
    {{ return(indexes + ((config.get('meta') or {}).get('indexes') or [])) }}
{% endmacro %}

{% macro quoted_columns(names) -%}
    {%- for name in names %}{{ adapter.quote(name) }}{% if not loop.last %}, {% endif %}{% endfor -%}
{%- endmacro %}
