{# Associations follow their sections' extraction: the sections endpoint's approval
   is what archives or restores them. #}
{{ config(materialized='incremental', unique_key=['district_slug', 'section_id', 'user_id', 'role'],
          incremental_strategy='delete+insert', on_schema_change='append_new_columns',
          pre_hook="{{ no_nested_loops_unless_keyed() }}",
          meta={'indexes': [{'columns': ['district_slug', 'snapshot_updated_at']}]}) }}
{{ archived_state('snap_clever__section_enrollments', 'sections',
                  keys=['district_slug', 'section_id', 'user_id', 'role']) }}
