{{ config(materialized='shared_table', pre_hook=no_nested_loops()) }}
{# One decision per Clever district that any rule finds an app district for: which
   app district, by which rule, or why it needs review (macro match_decision_ctes).
   Rules: clever_id, nces_id, name_state (normalised name and state; the state is the
   district's `matching.state` from config, else the most common state of its schools).
   One app district may be claimed by several Clever districts, so this small table (a
   row per district) is decided across all of them at every build (shared_table). #}
with rules as (
    select district_slug, rule, priority, confidence
    from {{ ref('stg_clever__match_rules') }}
    where entity = 'districts'
),

school_states as (
    select district_slug, mode() within group (order by {{ id_key('state') }}) as state
    from {{ ref('dim_schools') }}
    where {{ id_key('state') }} is not null
    group by district_slug
),

clever as (
    select
        d.district_slug,
        d.clever_id,
        {{ id_key('d.nces_id') }} as nces_key,
        clever_staging.normalize_name(d.name) as name_key,
        coalesce({{ id_key('ms.state') }}, ss.state) as state
    from {{ ref('dim_districts') }} as d
    left join {{ source('clever_landing', 'match_settings') }} as ms on ms.district_slug = d.district_slug
    left join school_states as ss on ss.district_slug = d.district_slug
),

clever_keys as (
    select district_slug, clever_id, 'clever_id' as rule, clever_id as key from clever
    union all
    select district_slug, clever_id, 'nces_id', nces_key from clever where nces_key is not null
    union all
    select district_slug, clever_id, 'name_state', name_key || '|' || state from clever
    where name_key is not null and state is not null
),

app_keys as (
    select app_district_id as app_id, 'clever_id' as rule, clever_key as key
    from {{ ref('stg_app__districts') }} where clever_key is not null
    union all
    select app_district_id, 'nces_id', nces_key from {{ ref('stg_app__districts') }} where nces_key is not null
    union all
    select app_district_id, 'name_state', name_key || '|' || state from {{ ref('stg_app__districts') }}
    where name_key is not null and state is not null
),

candidates as (
    select ck.district_slug, ck.clever_id, ck.clever_id as person_key, ak.app_id, r.rule, r.priority, r.confidence
    from clever_keys as ck
    join rules as r on r.district_slug = ck.district_slug and r.rule = ck.rule
    join app_keys as ak on ak.rule = ck.rule and ak.key = ck.key
),

{{ match_decision_ctes('candidates') }}

select * from decisions
