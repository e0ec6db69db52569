{# A view: last_seen_at moves with every sync, so it is joined when read (see macros/archived_dimension.sql). #}
{{ config(materialized='view') }}
{{ archived_dimension('int_state__sections', 'sections') }}
