{{ config(pre_hook=no_nested_loops()) }}
{# Clever users linked to the application's accounts, one row per linked Clever user
   (archived ones included). The records of one person (dim_people) may share an
   account. See macro effective_match_ctes for override and history rules. #}
with clever_records as (
    select district_slug, clever_id, person_id as person_key
    from {{ ref('int_people') }}
    where {{ in_build_scope('district_slug') }}
),

app_scope as (
    select app_user_id as app_id, district_slug from ({{ in_linked_district('stg_app__users') }}) as a
),

{{ effective_match_ctes('user', 'clever_records', 'app_scope', 'int_match__user_decisions',
                        'snap_match__user_links') }}

select
    district_slug,
    clever_id,
    app_id as app_user_id,
    person_key as person_id,
    rule,
    confidence,
    match_source,
    matched_since
from effective
