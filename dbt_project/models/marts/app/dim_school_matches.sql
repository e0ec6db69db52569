{{ config(pre_hook=no_nested_loops()) }}
{# Clever schools linked to the application's schools, one row per linked Clever
   school; an app school may only be linked in the district its app district is linked
   to (see macro effective_match_ctes for override and history rules). #}
with clever_records as (
    select district_slug, clever_id, clever_id as person_key
    from {{ ref('dim_schools') }}
    where {{ in_build_scope('district_slug') }}
),

app_scope as (
    select app_school_id as app_id, district_slug from ({{ in_linked_district('stg_app__schools') }}) as s
),

{{ effective_match_ctes('school', 'clever_records', 'app_scope', 'int_match__school_decisions',
                        'snap_match__school_links') }}

select
    district_slug,
    clever_id,
    app_id as app_school_id,
    rule,
    confidence,
    match_source,
    matched_since
from effective
