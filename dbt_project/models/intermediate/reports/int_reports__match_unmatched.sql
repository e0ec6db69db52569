{{ config(materialized='district_partition', unique_key='row_key') }}
{# The rows of rpt_match_unmatched that belong to a configured district, rebuilt by its
   build (macro match_unmatched_rows); row_key names the record on its side, so an app
   record whose app district moved to another Clever district is taken over by that
   district's build. #}
select
    side || ':' || entity || ':' || coalesce(clever_id, app_id::text) as row_key,
    unmatched.*
from (
{{ match_unmatched_rows(remainder=false) }}
) as unmatched
