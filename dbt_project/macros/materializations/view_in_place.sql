{# Views replaced in place, so BI never loses a relation during a build.

   dbt's own view materialization creates the new view under a temporary name, renames
   the old one away and drops it with CASCADE: every view that reads it (the marts read
   the staging views) is dropped too, until the build recreates it, and for good if the
   build dies in between. Here the view is replaced with CREATE OR REPLACE VIEW in one
   statement, which keeps its dependents, its grants and its OID. PostgreSQL refuses that
   only when columns are dropped, renamed or change type; then, and only then, the old
   view is dropped with its dependents and created again in the same transaction, and the
   same build recreates the dependents (they are its models downstream). A relation of
   another kind under the name (a table, before a model became a view) is dropped first.
   Views are created by the deploy build only (selectors.yml). #}

{% materialization view, adapter='postgres' %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set grant_config = config.get('grants') -%}
    {%- set create_sql = 'create or replace view ' ~ target_relation ~ ' as (\n' ~ sql ~ '\n)' -%}
    {%- set recreate_sql = 'drop view if exists ' ~ target_relation ~ ' cascade; create view '
                           ~ target_relation ~ ' as (\n' ~ sql ~ '\n)' -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% call statement('main') -%}
        {% if existing_relation is not none and not existing_relation.is_view %}
        drop {{ existing_relation.type }} if exists {{ existing_relation }} cascade;
        {% endif %}
        do $clever_view$
        begin
            execute {{ clever_dollar_quote(create_sql) }};
        exception when invalid_table_definition or datatype_mismatch or feature_not_supported then
            raise notice 'columns of % changed: view dropped and created with its dependents', {{ clever_dollar_quote(target_relation | string) }};
            execute {{ clever_dollar_quote(recreate_sql) }};
        end
        $clever_view$
    {%- endcall %}

    {% do apply_grants(target_relation, grant_config, should_revoke=should_revoke(existing_relation,
                                                                                  full_refresh_mode=True)) %}
    {% do persist_docs(target_relation, model) %}
    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}

{# A dollar-quoted SQL literal whose tag appears nowhere in the text. #}
{% macro clever_dollar_quote(text) %}
    {%- set ns = namespace(tag='clever_sql') -%}
    {%- for attempt in range(100) if ('$' ~ ns.tag ~ '$') in text -%}
        {%- set ns.tag = 'clever_sql_' ~ attempt -%}
    {%- endfor -%}
    {{- '$' ~ ns.tag ~ '$' ~ text ~ '$' ~ ns.tag ~ '$' -}}
{% endmacro %}
