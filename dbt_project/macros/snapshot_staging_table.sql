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

   In a district-scoped build (macros/build_scope.sql) both sides, the source and the
   snapshot's current rows, are limited to the build's districts, so a district's build
   compares its own records only and can never mistake another district's records for
   gone (neither side holds them).

   The output (columns, order and rows) is dbt's, so dbt's snapshot materialization and
   merge run unchanged, but for the key columns (dbt_unique_key*) of the 'delete' rows,
   which dbt leaves null: here they hold the key of the version the row closes, which our
   merge (postgres__snapshot_merge_sql below) joins on. Only for what this project uses (strategy check with a list of
   check_cols, hard_deletes: new_record, no dbt_valid_to_current); anything else gets
   dbt's version. tests/integration/test_snapshot_staging.py checks the rows against dbt's. #}
{% macro postgres__snapshot_staging_table(strategy, source_sql, target_relation) -%}
    {%- if not clever_snapshot_staging(strategy) -%}
        {{ return(default__snapshot_staging_table(strategy, source_sql, target_relation)) }}
    {%- endif -%}
    {{ return(clever_snapshot_staging_sql(strategy, source_sql, target_relation, 'staging')) }}
{%- endmacro %}

{# Whether our comparison applies: what this project uses (strategy check with a list of
   check_cols, hard_deletes: new_record, no dbt_valid_to_current), unless
   CLEVER_SNAPSHOT_STAGING=dbt asks for dbt's own SQL (the test that compares the two). #}
{% macro clever_snapshot_staging(strategy) %}
    {{ return(strategy.hard_deletes == 'new_record' and clever_snapshot_staging_configured()) }}
{% endmacro %}

{# The same from the snapshot's config alone (the merge has no strategy). #}
{% macro clever_snapshot_staging_configured() %}
    {{ return(config.get('hard_deletes') == 'new_record' and not config.get('dbt_valid_to_current')
              and config.get('strategy') == 'check' and config.get('check_cols') is not string
              and env_var('CLEVER_SNAPSHOT_STAGING', 'clever') != 'dbt') }}
{% endmacro %}

{# dbt's build_snapshot_staging_table in two statements when our comparison applies: the
   keys classified as new, changed or gone go to a temporary table first, analyzed, so the
   statement that reads their records in full is planned on how many there really are.
   In one statement PostgreSQL estimated "the changes" at one row whatever their number,
   and a first sync of a district joining a shared snapshot (every key new) read the
   district's whole source once per key: 113,000 enrolments took five minutes. #}
{% macro build_snapshot_staging_table(strategy, sql, target_relation) %}
    {% set temp_relation = make_temp_relation(target_relation) %}
    {% if clever_snapshot_staging(strategy) %}
        {% set keyed = event_key_scope(target_relation) %}
        {% if keyed %}
            {% call statement('build_snapshot_event_keys') %}
                drop table if exists {{ keyed.key_table }};
                create temporary table {{ keyed.key_table }} on commit drop as
                select a.district_slug, a.clever_id as scope_id
                from {{ source('clever_landing', 'applied_changes') }} as a
                join {{ keyed.state }} as s on s.district_slug = a.district_slug
                where a.endpoint = '{{ keyed.endpoint }}' and a.sync_run_id > s.through_run_id
                  and {{ in_build_scope('a.district_slug') }};
                analyze {{ keyed.key_table }};
            {% endcall %}
        {% endif %}
        {% call statement('build_snapshot_changes') %}
            drop table if exists {{ snapshot_changes_table(target_relation) }};
            create temporary table {{ snapshot_changes_table(target_relation) }} on commit drop as (
                {{ clever_snapshot_staging_sql(strategy, sql, target_relation, 'changes') }}
            );
            analyze {{ snapshot_changes_table(target_relation) }};
        {% endcall %}
    {% endif %}
    {% set select = snapshot_staging_table(strategy, sql, target_relation) %}
    {% call statement('build_snapshot_staging_relation') %}
        {{ create_table_as(True, temp_relation, select) }}
    {% endcall %}
    {% do return(temp_relation) %}
{% endmacro %}

{% macro snapshot_changes_table(target_relation) -%}
    {{ adapter.quote(target_relation.identifier ~ '__dbt_changes') }}
{%- endmacro %}

{# part 'changes': each key that is new, changed or gone, with the snapshot row it
   replaces; part 'staging': dbt's staging rows, built from those changes. #}
{% macro clever_snapshot_staging_sql(strategy, source_sql, target_relation, part) -%}
    {%- set check_cols = config.get('check_cols') -%}
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
    {%- set keyed = event_key_scope(target_relation) -%}
    {%- set scope = none if keyed else compare_scope(target_relation) %}
    with snapshot_query as not materialized (

        {{ source_sql }}

    ),

    {% if scope %}
    -- parent records (sections) whose record_hash differs from the one their children
    -- were last snapshotted from, or that appeared or disappeared since
    changed_scopes as (

        select coalesce(parent.district_slug, saved.district_slug) as district_slug,
               coalesce(parent.clever_id, saved.scope_id) as scope_id
        from (select district_slug, clever_id, record_hash from {{ ref(scope.parent) }}
              where {{ in_build_scope('district_slug') }}) as parent
        full outer join (select * from {{ scope.hashes }} where {{ in_build_scope('district_slug') }}) as saved
          on saved.district_slug = parent.district_slug and saved.scope_id = parent.clever_id
        where parent.record_hash is distinct from saved.scope_hash

    ),
    {% endif %}

    -- the source with the key columns as dbt names them; read in full only where joined
    source_data as not materialized (

        select *, {{ unique_key_fields(strategy.unique_key) }}
        from {% if keyed %}({{ keyed_rows('snapshot_query', keyed) }}) as keyed_source{% else %}snapshot_query{% endif %}
        where {{ in_build_scope('district_slug') }}
        {% if scope %}
          and (district_slug, {{ scope.column }}) in (select district_slug, scope_id from changed_scopes)
        {% endif %}

    ),

    snapshotted_data as not materialized (

        select *, {{ unique_key_fields(strategy.unique_key) }}
        from {% if keyed %}({{ keyed_rows(target_relation, keyed) }}) as keyed_snapshot{% else %}{{ target_relation }}{% endif %}
        where {{ columns.dbt_valid_to }} is null and {{ in_build_scope('district_slug') }}
        {% if scope %}
          and (district_slug, {{ scope.column }}) in (select district_slug, scope_id from changed_scopes)
        {% endif %}

    ),

    {% if part == 'changes' %}
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

    changes as (

        select * from compared where dbt_change is not null

    )

    select * from changes
    {% else %}
    {#- the temporary table itself, not a CTE over it: a CTE's rows have no statistics -#}
    {%- set changes = snapshot_changes_table(target_relation) %}
    {% if keyed %}
    {#- events keys: each change looks its rows up by key (driven by the changes, not joined
        with the keyed CTEs, which the planner would rescan once per change) -#}
    {%- set parent = 'dbt_unique_key_' ~ (keys.index(keyed.column) + 1) %}
    changed_source as (

        select source_data.*, changes.dbt_change, changes.dbt_target_scd_id, changes.dbt_target_is_deleted
        from {{ changes }} as changes
        cross join lateral (
            select *, {{ unique_key_fields(strategy.unique_key) }} from snapshot_query as s
            where s.district_slug = changes.dbt_unique_key_1 and s.{{ keyed.column }} = changes.{{ parent }}
            offset 0
        ) as source_data
        where changes.dbt_change in ('new', 'changed')
          and {{ unique_key_join_on(strategy.unique_key, "changes", "source_data") }}

    ),

    gone as (

        select snapshotted_data.*
        from {{ changes }} as changes
        cross join lateral (
            select *, {{ unique_key_fields(strategy.unique_key) }} from {{ target_relation }} as s
            where {% for key in keys %}s.{{ key }} = changes.{{ key_names[loop.index0] }} and {% endfor -%}
                  s.{{ columns.dbt_scd_id }} = changes.dbt_target_scd_id
            offset 0
        ) as snapshotted_data
        where changes.dbt_change = 'gone'

    ),
    {% else %}
    changed_source as (

        select source_data.*, changes.dbt_change, changes.dbt_target_scd_id, changes.dbt_target_is_deleted
        from {{ changes }} as changes
        join source_data on {{ unique_key_join_on(strategy.unique_key, "changes", "source_data") }}
        where changes.dbt_change in ('new', 'changed')

    ),

    gone as (

        select snapshotted_data.*
        from {{ changes }} as changes
        join snapshotted_data on snapshotted_data.{{ columns.dbt_scd_id }} = changes.dbt_target_scd_id
        where changes.dbt_change = 'gone'

    ),
    {% endif %}

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
            {# the key of the version it closes: the merge finds that version by it #}
            {% for key in key_names %}gone.{{ key }},
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
    {% endif %}
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
   parent hashes its rows now reflect, so the next build compares only what changed
   (for the build's districts only; the table is created by the deploy build). #}
{% macro save_compare_scope() %}
    {%- set scope = snapshot_meta().get('compare_scope') -%}
    {%- if not execute or not scope -%}{{ return('select 1') }}{%- endif -%}
    {%- set hashes = this.incorporate(path={'identifier': this.identifier ~ '__scope_hashes'}) -%}
    {%- if build_scope() is none %}
    create table if not exists {{ hashes }} (
        district_slug text not null,
        scope_id      text not null,
        scope_hash    text not null
    );
    create index if not exists {{ hashes.identifier }}_key_idx on {{ hashes }} (district_slug, scope_id);
    {%- endif %}
    {#- keyed if this snapshot's comparison was (save_compared_state may have run first) -#}
    {%- set keyed = event_key_scope(this) if event_keys_compared(this) else none %}
    delete from {{ hashes }} where {{ in_build_scope('district_slug') }}
    {% if keyed %}and (district_slug, scope_id) in (select district_slug, scope_id from {{ keyed.key_table }}){% endif %};
    insert into {{ hashes }} (district_slug, scope_id, scope_hash)
    select district_slug, clever_id, record_hash
    from {% if keyed %}({{ keyed_rows(ref(scope.parent), {'key_table': keyed.key_table, 'column': 'clever_id'}) }}) as parents
         {%- else %}{{ ref(scope.parent) }}{% endif %}
    where {{ in_build_scope('district_slug') }};
    {{ analyze_if_changed(hashes) }}
{% endmacro %}

{# For an events district (clever.events): the keys a snapshot must compare when only
   events changed its records since it last compared them. Its last comparison is kept in
   <snapshot>__compared (the full extraction it read, and the last events run applied
   then), written in the snapshot's own transaction (post-hook save_compared_state). When
   every district of the build still reads the same full extraction, only the records
   changed by events runs approved since can differ between the staging view and the
   snapshot: the comparison (and an enrolment snapshot's rosters) is limited to those
   keys, a few thousand instead of a million. Otherwise (a full sync approved, a first
   build, an unscoped build, full_refresh) every key is compared, as before.
   Returns none, or {endpoint, column, state, key_table}. #}
{% macro event_key_scope(target_relation) %}
    {%- set settings = snapshot_meta().get('event_keys') -%}
    {%- if not execute or not settings or build_scope() is none or scoped_full_refresh() -%}{{ return(none) }}{%- endif -%}
    {%- set state = adapter.get_relation(database=target_relation.database, schema=target_relation.schema,
                                         identifier=target_relation.identifier ~ '__compared') -%}
    {%- if state is none -%}{{ return(none) }}{%- endif -%}
    {%- set endpoint = settings.get('endpoint') or target_relation.identifier.split('__')[-1] -%}
    {%- set unkeyed = run_query(
        "select count(*) from (select unnest(array['" ~ (build_scope() | join("', '")) ~ "']) as district_slug) as d "
        ~ "left join " ~ source('clever_landing', 'current_extractions') ~ " as c on c.district_slug = d.district_slug "
        ~ "and c.endpoint = '" ~ endpoint ~ "' left join " ~ state ~ " as s on s.district_slug = d.district_slug "
        ~ "where s.base_run_id is distinct from c.base_run_id or c.base_run_id is null") -%}
    {%- if unkeyed.columns[0].values()[0] != 0 -%}{{ return(none) }}{%- endif -%}
    {{ return({'endpoint': endpoint, 'column': settings.get('column', 'clever_id'), 'state': state,
               'key_table': adapter.quote(target_relation.identifier ~ '__dbt_event_keys')}) }}
{% endmacro %}

{# The rows of `relation` (the staging query, or the snapshot) with the keys events changed,
   looked up key by key: a lateral join puts each key into the staging view's branches
   (and its carried records), so they are read through their indexes and only their rows
   are typed and hashed. A semi-join lets the planner read the whole district first. #}
{% macro keyed_rows(relation, keyed) -%}
    select keyed.* from {{ keyed.key_table }} as k
    cross join lateral (
        select * from {{ relation }} as r
        where r.district_slug = k.district_slug and r.{{ keyed.column }} = k.scope_id
        offset 0  -- keeps it a subquery run per key: else the planner may join the whole district
    ) as keyed
{%- endmacro %}

{# Whether this transaction's comparison was limited to events' keys (its table exists). #}
{% macro event_keys_compared(target_relation) %}
    {%- set found = run_query("select to_regclass('pg_temp." ~ adapter.quote(target_relation.identifier ~ '__dbt_event_keys')
                              ~ "') is not null") -%}
    {{ return(found.columns[0].values()[0]) }}
{% endmacro %}

{# Post-hook of every snapshot with meta event_keys, inside its transaction: which full
   extraction it now reflects, and the last events run applied over it (event_key_scope).
   The table is created by the deploy build. #}
{% macro save_compared_state() %}
    {%- set settings = snapshot_meta().get('event_keys') -%}
    {%- if not execute or not settings -%}{{ return('select 1') }}{%- endif -%}
    {%- set state = this.incorporate(path={'identifier': this.identifier ~ '__compared'}) -%}
    {%- set endpoint = settings.get('endpoint') or this.identifier.split('__')[-1] -%}
    {%- if build_scope() is none %}
    create table if not exists {{ state }} (
        district_slug   text   primary key,
        base_run_id     bigint not null,
        through_run_id  bigint not null
    );
    {%- endif %}
    delete from {{ state }} where {{ in_build_scope('district_slug') }};
    insert into {{ state }} (district_slug, base_run_id, through_run_id)
    select c.district_slug, c.base_run_id, greatest(c.base_run_id, coalesce(max(a.sync_run_id), 0))
    from {{ source('clever_landing', 'current_extractions') }} as c
    left join {{ source('clever_landing', 'applied_changes') }} as a
      on a.district_slug = c.district_slug and a.endpoint = c.endpoint
    where c.endpoint = '{{ endpoint }}' and {{ in_build_scope('c.district_slug') }}
    group by c.district_slug, c.base_run_id
{% endmacro %}

{# dbt-postgres's snapshot merge, with the update of closed versions limited to the
   build's districts: the staging rows hold only those, and without the predicate
   PostgreSQL would hash the whole shared snapshot (every district) to find them. The
   versions it closes are joined on their key as well as dbt_scd_id (which no index
   covers): the staging rows carry the key (dbt_unique_key_*, deletions included), so the
   snapshot's key index finds the few thousand an events run closes, where the district's
   every version was scanned (8 s for 27,000 enrolments of a million-student district). #}
{% macro postgres__snapshot_merge_sql(target, source, insert_cols) -%}
    {%- set insert_cols_csv = insert_cols | join(', ') -%}
    {%- set columns = config.get("snapshot_table_column_names") or get_snapshot_table_column_names() -%}
    {%- if config.get("dbt_valid_to_current") or '"district_slug"' not in insert_cols -%}
        {{ return(dbt_postgres.postgres__snapshot_merge_sql(target, source, insert_cols)) }}
    {%- endif %}
    {%- set unique_key = config.get('unique_key') if clever_snapshot_staging_configured() else none -%}
    update {{ target }}
    set {{ columns.dbt_valid_to }} = DBT_INTERNAL_SOURCE.{{ columns.dbt_valid_to }}
    from {{ source }} as DBT_INTERNAL_SOURCE
    where DBT_INTERNAL_SOURCE.{{ columns.dbt_scd_id }}::text = {{ target }}.{{ columns.dbt_scd_id }}::text
      {% if unique_key is none -%}
      {% elif unique_key | is_list -%}
      {% for key in unique_key %}and {{ target }}.{{ key }} = DBT_INTERNAL_SOURCE.dbt_unique_key_{{ loop.index }}
      {% endfor -%}
      {%- else -%}
      and {{ target }}.{{ unique_key }} = DBT_INTERNAL_SOURCE.dbt_unique_key
      {% endif -%}
      and DBT_INTERNAL_SOURCE.dbt_change_type::text in ('update'::text, 'delete'::text)
      and {{ target }}.{{ columns.dbt_valid_to }} is null
      and {{ in_build_scope(target ~ '.district_slug') }};

    insert into {{ target }} ({{ insert_cols_csv }})
    select {% for column in insert_cols -%}
        DBT_INTERNAL_SOURCE.{{ column }} {%- if not loop.last %}, {%- endif %}
    {%- endfor %}
    from {{ source }} as DBT_INTERNAL_SOURCE
    where DBT_INTERNAL_SOURCE.dbt_change_type::text = 'insert'::text;
{% endmacro %}

{% macro snapshot_meta() %}
    {{ return(config.get('meta') or model.config.get('meta') or {}) }}
{% endmacro %}
