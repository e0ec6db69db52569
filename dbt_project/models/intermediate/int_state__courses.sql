{{ config(materialized='incremental', unique_key=['district_slug', 'clever_id'], incremental_strategy='delete+insert',
          on_schema_change='append_new_columns', pre_hook="{{ no_nested_loops_unless_keyed() }}",
          meta={'indexes': [{'columns': ['district_slug', 'snapshot_updated_at']}]}) }}
{{ archived_state('snap_clever__courses', 'courses') }}
