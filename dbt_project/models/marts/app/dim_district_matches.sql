{{ config(materialized='shared_table', pre_hook=no_nested_loops()) }}
{# Clever districts linked to the application's districts, one row per linked Clever
   district (see macro effective_match_ctes for override and history rules). Decided
   across all districts at every build (shared_table): an app district is linked to one
   Clever district at most. #}
with clever_records as (
    select district_slug, clever_id, clever_id as person_key
    from {{ ref('dim_districts') }}
),

app_scope as (  -- an app district may be linked in any configured district
    select a.app_district_id as app_id, c.district_slug
    from {{ ref('stg_app__districts') }} as a
    cross join (select distinct district_slug from clever_records) as c
),

{{ effective_match_ctes('district', 'clever_records', 'app_scope', 'int_match__district_decisions',
                        'snap_match__district_links', scoped=false) }}

select
    district_slug,
    clever_id,
    app_id as app_district_id,
    rule,
    confidence,
    match_source,
    matched_since
from effective
