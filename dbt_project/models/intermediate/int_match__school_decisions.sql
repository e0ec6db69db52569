{{ config(pre_hook=no_nested_loops()) }}
{# One decision per Clever school that any rule finds an app school for, among the app
   schools of the app district its Clever district is linked to (dim_district_matches):
   a school is never matched across districts. Rules: clever_id, nces_id, state_id,
   sis_id, school_number, name (normalised). #}
{% set key_columns = {'nces_id': 'nces_key', 'state_id': 'state_id_key', 'sis_id': 'sis_id_key',
                      'school_number': 'school_number_key', 'name': 'name_key'} %}
with rules as (
    select district_slug, rule, priority, confidence
    from {{ ref('stg_clever__match_rules') }}
    where entity = 'schools' and {{ in_build_scope('district_slug') }}
),

clever as (
    select
        district_slug,
        clever_id,
        {{ id_key('nces_id') }} as nces_key,
        {{ id_key('state_id') }} as state_id_key,
        {{ id_key('sis_id') }} as sis_id_key,
        {{ id_key('school_number') }} as school_number_key,
        clever_staging.normalize_name(name) as name_key
    from {{ ref('dim_schools') }}
    where {{ in_build_scope('district_slug') }}
),

clever_keys as (
    select district_slug, clever_id, 'clever_id' as rule, clever_id as key from clever
    {% for rule, column in key_columns.items() %}
    union all
    select district_slug, clever_id, '{{ rule }}', {{ column }} from clever where {{ column }} is not null
    {% endfor %}
),

app as ({{ in_linked_district('stg_app__schools') }}),

app_keys as (
    select district_slug, app_school_id as app_id, 'clever_id' as rule, clever_key as key from app
    where clever_key is not null
    {% for rule, column in key_columns.items() %}
    union all
    select district_slug, app_school_id, '{{ rule }}', {{ column }} from app where {{ column }} is not null
    {% endfor %}
),

candidates as (
    select ck.district_slug, ck.clever_id, ck.clever_id as person_key, ak.app_id, r.rule, r.priority, r.confidence
    from clever_keys as ck
    join rules as r on r.district_slug = ck.district_slug and r.rule = ck.rule
    join app_keys as ak on ak.district_slug = ck.district_slug and ak.rule = ck.rule and ak.key = ck.key
),

{{ match_decision_ctes('candidates') }}

select * from decisions
