{# District-scoped builds.

   A district's sync builds only its own data: clever.dbt_runner sets
   CLEVER_BUILD_DISTRICTS (comma-separated slugs) for the dbt process, and every model,
   snapshot and test that reads per-district data filters on it. Without it (the deploy
   build, a manual `dbt build`) everything is built.

   The variable is read only while executing (`execute`), never while parsing, so a new
   scope does not invalidate dbt's partial parse: each build re-parses in about a second
   instead of five (`--vars` would force a full parse every time). Slugs are checked
   against the config's pattern before they are written into SQL as literals, so the
   planner sees the district it filters on. #}

{% macro build_scope() %}
    {%- if not execute -%}{{ return(none) }}{%- endif -%}
    {%- set raw = env_var('CLEVER_BUILD_DISTRICTS', '') | trim -%}
    {%- if not raw -%}{{ return(none) }}{%- endif -%}
    {%- set slugs = [] -%}
    {%- for slug in raw.split(',') -%}
        {%- set slug = slug | trim -%}
        {%- if not modules.re.fullmatch('[a-z][a-z0-9_]{0,62}', slug) -%}
            {{ exceptions.raise_compiler_error("CLEVER_BUILD_DISTRICTS holds " ~ slug ~ ", not a district slug") }}
        {%- endif -%}
        {%- do slugs.append(slug) -%}
    {%- endfor -%}
    {{ return(slugs) }}
{% endmacro %}

{# The slug of a build of exactly one district (a district's sync), else none. #}
{% macro single_district_build() %}
    {%- set scope = build_scope() -%}
    {{ return(scope[0] if scope is not none and scope | length == 1 else none) }}
{% endmacro %}

{# A district's `full_refresh` run (CLEVER_BUILD_FULL_REFRESH=1): incremental models
   recompute every row of the build's districts. dbt's own --full-refresh would rebuild
   the shared table from those districts alone, so it is only used unscoped. #}
{% macro scoped_full_refresh() %}
    {{ return(execute and env_var('CLEVER_BUILD_FULL_REFRESH', '') == '1') }}
{% endmacro %}

{# In an incremental model: a scoped build neither creates nor fully rebuilds the shared
   table (that would keep only its districts' rows). #}
{% macro require_incremental_when_scoped() %}
    {%- if execute and build_scope() is not none and not is_incremental() -%}
        {{ exceptions.raise_compiler_error(
            this ~ ": a district-scoped build cannot create or --full-refresh a table every district shares; "
            ~ "deploy the project first (unscoped build), or use the scoped full refresh") }}
    {%- endif -%}
{% endmacro %}

{# A predicate: `column` belongs to a district this build covers (`true` when unscoped). #}
{% macro in_build_scope(column) -%}
    {%- set scope = build_scope() -%}
    {%- if scope is none -%}true{%- else -%}{{ column }} in ('{{ scope | join("', '") }}'){%- endif -%}
{%- endmacro %}

{# Run only in an unscoped (deploy) build, which holds the warehouse exclusively:
   DDL on shared objects (functions, roles, grants) would race between concurrent
   district builds ("tuple concurrently updated"). #}
{% macro deploy_only(sql) %}
    {%- if build_scope() is none -%}{{ sql }}{%- else -%}select 1{%- endif -%}
{% endmacro %}

{# Post-hook: the indexes a model's per-district reads and writes need (meta
   `indexes`: a list of {columns, unique, where}; `where` makes a partial index). Created
   when missing; the catalog is checked first in a DO block, because CREATE INDEX IF NOT
   EXISTS would take a share lock on the table and wait for every concurrent district
   build writing it. Names are derived from the table, columns and predicate, so the
   check is exact. #}
{% macro ensure_indexes(indexes=none) %}
    {%- set indexes = indexes if indexes is not none else (config.get('meta') or {}).get('indexes', []) -%}
    {%- if not execute or not indexes -%}{{ return('select 1') }}{%- endif -%}
    {%- set statements = [] -%}
    {%- for index in indexes -%}
        {%- set where = index.where | default('') -%}
        {%- set stem = (this.identifier ~ '__' ~ (index.columns | join('_')))[:50] -%}
        {%- set stem = stem[:44] ~ '_where' if where else stem -%}
        {%- set name = stem ~ '_' ~ local_md5(this.identifier ~ (index.columns | join(','))
                                              ~ (index.unique | default(false)) ~ where)[:8] -%}
        {%- do statements.append(
            "if not exists (select from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace "
            ~ "where n.nspname = '" ~ this.schema ~ "' and c.relname = '" ~ name ~ "') then "
            ~ "create " ~ ("unique " if index.unique else "") ~ "index " ~ adapter.quote(name) ~ " on " ~ this
            ~ " (" ~ (index.columns | join(', ')) ~ ")" ~ (" where " ~ where if where else "") ~ "; end if;") -%}
    {%- endfor -%}
    do $$ begin {{ statements | join(' ') }} end $$
{% endmacro %}

{# Post-hook: fresh statistics when the rows this transaction added could mislead the
   next models of the same build, which are planned before autovacuum would get there (a
   million-row snapshot planned on an empty table's statistics never finishes): the table
   was never analyzed, or the transaction added a tenth of it, or it added a hundredth of
   it for a district its statistics do not know (not among the table's most common
   districts: a district's first sync in a warehouse of many). A known district's daily
   changes do not re-sample the shared table at every build (2.7 s for the users'
   snapshot at a million students, on a 1% day); its new versions are found through
   indexes, whose ends the planner reads itself. #}
{% macro analyze_if_changed(relation=none) %}
    {%- if not execute -%}{{ return('select 1') }}{%- endif -%}
    {%- set relation = relation if relation is not none else this -%}
    {%- set scope = build_scope() or [] -%}
do $$
declare
    added double precision;
    estimated double precision;
    unknown_district boolean;
begin
    select coalesce(n_tup_ins, 0) into added
    from pg_catalog.pg_stat_xact_user_tables where relid = '{{ relation }}'::regclass;
    select reltuples into estimated from pg_catalog.pg_class where oid = '{{ relation }}'::regclass;
    select coalesce(bool_or(not coalesce(d = any(s.most_common_vals::text::text[]), false)), {{ 'false' if scope else 'true' }})
    into unknown_district
    from unnest(array[{% for slug in scope %}'{{ slug }}'{% if not loop.last %}, {% endif %}{% endfor %}]::text[]) as d
    left join pg_catalog.pg_stats as s
      on s.schemaname = '{{ relation.schema }}' and s.tablename = '{{ relation.identifier }}' and s.attname = 'district_slug';
    if estimated < 0 or coalesce(added, 0) > greatest(estimated, 1) * 0.1
       or (unknown_district and coalesce(added, 0) > greatest(estimated, 1) * 0.01) then
        execute 'analyze {{ relation }}';
    end if;
end $$
{% endmacro %}

{# The indexes every snapshot needs for per-district work: its key, led by the district
   (the comparison's current rows, the history of changed keys), the district with the
   version start (what a build wrote since the last one: state tables, daily counts, the
   run summary), and the district of the active versions only (current, not deleted): the
   mass-archive guard counts a district's active records from that index alone, without
   visiting every version (deduplicated, a million entries take a few MB). #}
{% macro snapshot_indexes() %}
    {%- set keys = config.get('unique_key') -%}
    {%- set keys = [keys] if keys is string else keys -%}
    {%- set indexes = [{'columns': keys}, {'columns': ['district_slug', 'dbt_valid_from']}] -%}
    {%- if config.get('hard_deletes') == 'new_record' -%}  {# dbt_is_deleted exists #}
        {%- do indexes.append({'columns': ['district_slug'], 'where': active_version_predicate()}) -%}
    {%- endif -%}
    {{ return(indexes) }}
{% endmacro %}

{# A snapshot row is its key's active version: current and not a deletion row
   (clever.guard writes the same predicate, so the planner can use the partial index). #}
{% macro active_version_predicate() -%}
dbt_valid_to is null and dbt_is_deleted = 'False'
{%- endmacro %}

{# Generic data tests (unique, not_null, relationships, ...) read the model they test
   through this macro (dbt's own, overridden): in a district-scoped build only the rows
   of the build's districts are tested, so a district's build costs its own rows and a
   failure is that district's. Singular tests filter with in_build_scope themselves. #}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}{%- do conditions.append('(' ~ where ~ ')') -%}{%- endif -%}
    {%- if build_scope() is not none and relation_has_district(relation) -%}
        {%- do conditions.append(in_build_scope('district_slug')) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ (conditions | join(' and ')) ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{# Whether a relation has a district_slug column: from the documented columns of the
   model or snapshot it is (every one is documented, tests/unit), else from the catalog. #}
{% macro relation_has_district(relation) %}
    {%- set name = relation | string -%}
    {%- for node in graph.nodes.values() if node.resource_type in ('model', 'snapshot')
                                              and node.relation_name == name -%}
        {{ return('district_slug' in node.columns) }}
    {%- endfor -%}
    {{ return('district_slug' in (adapter.get_columns_in_relation(relation) | map(attribute='name') | list)) }}
{% endmacro %}
