{# What the match review reports need to know about each matched entity. #}
{% macro match_entities() %}
{{ return([
    {'entity': 'district', 'clever': 'dim_districts', 'app': 'stg_app__districts', 'app_key': 'app_district_id',
     'decisions': 'int_match__district_decisions', 'matches': 'dim_district_matches',
     'clever_label': 'c.name', 'app_label': 'a.name', 'app_district': 'a.app_district_id'},
    {'entity': 'school', 'clever': 'dim_schools', 'app': 'stg_app__schools', 'app_key': 'app_school_id',
     'decisions': 'int_match__school_decisions', 'matches': 'dim_school_matches',
     'clever_label': 'c.name', 'app_label': 'a.name', 'app_district': 'a.app_district_id'},
    {'entity': 'user', 'clever': 'dim_users', 'app': 'stg_app__users', 'app_key': 'app_user_id',
     'decisions': 'int_match__user_decisions', 'matches': 'dim_user_matches',
     'clever_label': "concat_ws(' ', c.first_name, c.last_name)",
     'app_label': "concat_ws(' ', a.first_name, a.last_name) || ' (' || a.role || ')'",
     'app_district': 'a.app_district_id'},
]) }}
{% endmacro %}
