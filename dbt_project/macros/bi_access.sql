{# The read-only BI role clever_bi: it may read clever_marts and
   clever_reports and nothing else. Landing, staging and snapshots hold raw student PII.

   - ensure_bi_role (on-run-start) creates the role if it is missing (NOLOGIN: people and
     BI tools log in as their own roles, members of it), creates the two BI schemas and
     grants USAGE on them, and takes away any privilege on the other schemas, so drift
     from a hand-made grant is undone by the next build.
   - Tables and views get SELECT from dbt's `grants` config (dbt_project.yml) each time
     dbt rebuilds them, inside the same transaction, so readers never see a rebuilt
     table without its grant. Default privileges cover objects created in those schemas
     outside dbt's grants (e.g. a table a DBA adds by hand).
   - Views run with their owner's privileges, which is how clever_reports.rpt_sync_* shows
     run metadata from clever_landing to a role that cannot read clever_landing. #}

{% macro bi_schemas() %}{{ return(['clever_marts', 'clever_reports']) }}{% endmacro %}
{% macro pii_schemas() %}{{ return(['clever_landing', 'clever_staging', 'clever_snapshots']) }}{% endmacro %}

{% macro ensure_bi_role() %}
{% set role = 'clever_bi' %}  {# also named in dbt_project.yml's grants #}
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = '{{ role }}') then
        begin
            create role {{ adapter.quote(role) }} nologin;
        exception
            when duplicate_object then null;  -- created meanwhile by a concurrent dbt run
            when insufficient_privilege then
                raise exception using
                    message = format('the warehouse user %I may not create the read-only BI role %I', current_user, '{{ role }}'),
                    hint = 'Create it once as an administrator: CREATE ROLE {{ role }} NOLOGIN; (or give the warehouse user CREATEROLE)';
        end;
    end if;
end $$;
{% for schema in bi_schemas() %}
create schema if not exists {{ schema }};
grant usage on schema {{ schema }} to {{ adapter.quote(role) }};
alter default privileges in schema {{ schema }} grant select on tables to {{ adapter.quote(role) }};
{% endfor %}
do $$
declare
    pii_schema text;
begin
    foreach pii_schema in array array['{{ pii_schemas() | join("', '") }}'] loop
        if exists (select from pg_catalog.pg_namespace where nspname = pii_schema) then
            execute format('revoke all on schema %I from %I', pii_schema, '{{ role }}');
            execute format('revoke all on all tables in schema %I from %I', pii_schema, '{{ role }}');
        end if;
    end loop;
end $$;
{% endmacro %}
