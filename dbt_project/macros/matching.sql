{# Matching the application's records (schema app) to Clever records. Shared by the
   district, school and user models in models/intermediate and models/marts; the rules
   themselves and their default order are catalogued in plugins/clever/match_rules.py.
   docs/ARCHITECTURE.md#matching explains the design. #}

{% macro create_matching_functions() %}
create schema if not exists clever_staging;
{# Names compared across systems: Unicode-decomposed, accents dropped, lower-cased,
   spaces and punctuation removed ("Seán O'Brien" = "sean obrien"). Non-Latin letters
   are kept. NULL when nothing is left. #}
create or replace function clever_staging.normalize_name(value text) returns text
language sql immutable parallel safe as $$
    select nullif(lower(regexp_replace(
        regexp_replace(normalize(value, NFKD), '[\u0300-\u036f]', '', 'g'),
        '[[:space:][:punct:]\u2018\u2019\u201c\u201d\u2010-\u2015]+', '', 'g')), '')
$$;
{% endmacro %}

{# Pre-hook of the matching models and rpt_rollover: every join there is an equi-join of two large sets,
   so a nested loop is never the right plan, but the planner picks one when a chain of
   CTEs makes it underestimate rows; SET LOCAL ends with the model's transaction. #}
{% macro no_nested_loops() %}
    set local enable_nestloop = off
{% endmacro %}

{# Pre-hook of the state tables: a district's incremental build reads only the keys its
   snapshot versioned since its watermark (a constant, district_watermark_literal), well
   estimated, so the planner's index lookups per key stand; every other build (first,
   full refresh, several districts, the deploy) joins whole histories: no nested loops. #}
{% macro no_nested_loops_unless_keyed() %}
    {%- if execute and is_incremental() and not scoped_full_refresh() and single_district_build() is not none -%}
    select 1
    {%- else -%}
    {{ no_nested_loops() }}
    {%- endif -%}
{% endmacro %}

{# Pre-hook of rpt_rollover: its student rows (pairs x students) come through array
   overlaps, which the planner estimates at a few rows, so it sorts a million rows to
   group them into a few thousand; grouping by hash needs no order. #}
{% macro hash_aggregates() %}
    set local enable_sort = off
{% endmacro %}

{# Pre-hook of rpt_rollover: about ten hash tables are alive at once in its plan. At the
   bench warehouse's work_mem (64MB, twice that for hashes) a million-student build held
   one backend above 1 GiB; 32MB each without the multiplier keeps it near half of that,
   and the same query ran faster (docs/PERFORMANCE.md). #}
{% macro bounded_hash_memory() %}
    set local work_mem = '32MB'; set local hash_mem_multiplier = 1
{% endmacro %}

{# An identifier compared across systems (SIS, state, NCES IDs, school numbers). #}
{% macro id_key(expr) -%}
    nullif(upper(btrim({{ expr }})), '')
{%- endmacro %}

{# A Clever ID an application stored (Clever IDs are lower-case hex). #}
{% macro clever_id_key(expr) -%}
    nullif(lower(btrim({{ expr }})), '')
{%- endmacro %}

{% macro email_key(expr) -%}
    nullif(lower(btrim({{ expr }})), '')
{%- endmacro %}

{# First and last name, each normalised; NULL unless both are present. #}
{% macro person_name_key(first, last) -%}
    clever_staging.normalize_name({{ first }}) || '|' || clever_staging.normalize_name({{ last }})
{%- endmacro %}

{# CTEs turning evidence into one decision per Clever record. `candidates` has one row
   per piece of evidence: district_slug, clever_id, person_key (records of one person
   share it), app_id, rule, priority (1 = tried first) and confidence.

   1. The Clever record's deciding rule is the first, in its district's order, that finds
      any app record. Later rules are not consulted: a stronger rule that finds several
      app records makes the record ambiguous rather than letting a weaker rule pick one.
   2. Several app records at the deciding rule: 'ambiguous'.
   3. One app record: a claim on it. An app record claimed by several people is won by
      the one person whose claim has the strongest rule; claims of other people lose
      ('conflict'), and a tie between people makes all of them 'ambiguous'. The records
      of one person (a teacher who is also a district admin) all keep the app record.
   Ends with the CTE `decisions`; nothing depends on row order, so it is deterministic. #}
{% macro match_decision_ctes(candidates) %}
deciding_rule as (
    select district_slug, clever_id, min(priority) as priority
    from {{ candidates }}
    group by district_slug, clever_id
),

evidence as (
    select
        c.district_slug,
        c.clever_id,
        min(c.person_key) as person_key,
        c.priority,
        min(c.rule) as rule,
        min(c.confidence) as confidence,
        array_agg(distinct c.app_id order by c.app_id) as candidate_app_ids
    from {{ candidates }} as c
    join deciding_rule as d
      on d.district_slug = c.district_slug and d.clever_id = c.clever_id and d.priority = c.priority
    group by c.district_slug, c.clever_id, c.priority
),

claims as (
    select *, candidate_app_ids[1] as app_id
    from evidence
    where cardinality(candidate_app_ids) = 1
),

person_claims as (
    select district_slug, person_key, app_id, min(priority) as priority
    from claims
    group by district_slug, person_key, app_id
),

ranked_claims as (
    select
        *,
        rank() over (partition by app_id order by priority) as claim_rank,
        count(*) over (partition by app_id, priority) as claimants_at_rank
    from person_claims
),

decisions as (
    select
        e.district_slug,
        e.clever_id,
        e.person_key,
        case
            when cardinality(e.candidate_app_ids) > 1 then 'ambiguous'
            when r.claim_rank > 1 then 'conflict'
            when r.claimants_at_rank > 1 then 'ambiguous'
            else 'matched'
        end as status,
        case when cardinality(e.candidate_app_ids) = 1 and r.claim_rank = 1 and r.claimants_at_rank = 1
             then e.candidate_app_ids[1] end as app_id,
        e.rule,
        e.priority,
        e.confidence,
        e.candidate_app_ids,
        case
            when cardinality(e.candidate_app_ids) > 1
                then 'several app records match by ' || e.rule
            when r.claim_rank > 1
                then 'the app record matches another Clever record by a stronger rule'
            when r.claimants_at_rank > 1
                then 'the app record also matches other Clever records by ' || e.rule
        end as review_reason
    from evidence as e
    left join ranked_claims as r
      on cardinality(e.candidate_app_ids) = 1
     and r.district_slug = e.district_slug and r.person_key = e.person_key and r.app_id = e.candidate_app_ids[1]
)
{% endmacro %}

{# The links in effect, one row per linked Clever record, with their history kept:
   1. a valid manual override (app.match_overrides) wins over every rule; one with
      app_id NULL unlinks the record;
   2. otherwise the *first* link the rules ever made for the record (from the snapshot
      `links_snapshot` of the rule decisions) stays, as long as its app record still
      exists in the same district: a link never moves because an email or SIS ID changed
      on either side later (match_source 'retained' when today's rules no longer give it);
   3. an app record keeps the one person it was linked to first; an override hands it to
      another person.
   Arguments are relation or CTE names: clever_records (district_slug, clever_id,
   person_key), app_scope (app_id, district_slug: the districts an app record may be
   linked in), decisions (from match_decision_ctes). Ends with the CTE `effective`.
   `scoped`: per district (schools, users), a district-scoped build reads its own
   districts' overrides and links; the districts' own matching is decided across all. #}
{% macro effective_match_ctes(entity, clever_records, app_scope, decisions, links_snapshot, scoped=true) %}
scope as (
    select distinct app_id, district_slug from {{ app_scope }}
),

overrides as (
    select
        o.district_slug,
        o.clever_id,
        c.person_key,
        o.app_id,
        o.created_at,
        o.app_id is null or s.app_id is not null as is_valid
    from {{ source('app', 'match_overrides') }} as o
    join {{ clever_records }} as c
      on c.district_slug = o.district_slug and c.clever_id = o.clever_id
     {% if scoped %}and {{ in_build_scope('o.district_slug') }}{% endif %}
    left join scope as s on s.app_id = o.app_id and s.district_slug = o.district_slug
    where o.entity = '{{ entity }}'
),

established as (
    select distinct on (h.district_slug, h.clever_id)
        h.district_slug,
        h.clever_id,
        c.person_key,
        h.app_id,
        h.rule,
        h.confidence,
        h.dbt_valid_from at time zone 'UTC' as linked_at
    from {{ ref(links_snapshot) }} as h
    join {{ clever_records }} as c
      on c.district_slug = h.district_slug and c.clever_id = h.clever_id
     {% if scoped %}and {{ in_build_scope('h.district_slug') }}{% endif %}
    join scope as s
      on s.app_id = h.app_id and s.district_slug = h.district_slug
    where h.dbt_is_deleted = 'False'
    order by h.district_slug, h.clever_id, h.dbt_valid_from, h.app_id
),

established_kept as (
    select *
    from (
        select
            e.*,
            first_value(e.district_slug || ':' || e.person_key) over (
                partition by e.app_id order by e.linked_at, e.district_slug, e.person_key) as first_person
        from established as e
        where not exists (
                select 1 from overrides as o
                where o.is_valid and o.district_slug = e.district_slug and o.clever_id = e.clever_id)
          and not exists (
                select 1 from overrides as o
                where o.is_valid and o.app_id = e.app_id
                  and (o.district_slug, o.person_key) <> (e.district_slug, e.person_key))
    ) as ranked
    where first_person = district_slug || ':' || person_key
),

effective as (
    select
        district_slug, clever_id, person_key, app_id,
        'override' as rule,
        1.00::numeric as confidence,
        'override' as match_source,
        created_at as matched_since
    from overrides
    where is_valid and app_id is not null
    union all
    select
        e.district_slug, e.clever_id, e.person_key, e.app_id,
        case when d.app_id = e.app_id then d.rule else e.rule end,
        case when d.app_id = e.app_id then d.confidence else e.confidence end,
        case when d.app_id = e.app_id then 'rule' else 'retained' end,
        e.linked_at
    from established_kept as e
    left join {{ ref(decisions) }} as d
      on d.district_slug = e.district_slug and d.clever_id = e.clever_id and d.status = 'matched'
)
{% endmacro %}

{# The application's schools or accounts, each with the configured district its app
   district is linked to (dim_district_matches): the only district it may be matched in.
   A district-scoped build reads those of its districts only. #}
{% macro in_linked_district(app_model) %}
    select a.*, dm.district_slug
    from {{ ref(app_model) }} as a
    join {{ ref('dim_district_matches') }} as dm on dm.app_district_id = a.app_district_id
    where {{ in_build_scope('dm.district_slug') }}
{% endmacro %}

{# Clever user IDs the application stored, resolved to the configured district holding
   them. Clever IDs are unique across Clever; if one district were configured twice, the
   first slug wins. #}
{% macro clever_user_districts() %}
    select distinct on (clever_id) clever_id, district_slug
    from {{ ref('dim_users') }}
    where {{ in_build_scope('district_slug') }}
    order by clever_id, district_slug
{% endmacro %}
