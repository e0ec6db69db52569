{# Every term ever shared (archived ones too: last year's sections still point at them),
   with the school year it belongs to, from its start date (its end date if it has none). #}
select
    district_slug,
    clever_id as term_id,
    name as term_name,
    start_date,
    end_date,
    is_archived,
    {{ school_year_start('coalesce(start_date, end_date)') }} as school_year_start
from {{ ref('dim_terms') }}
where {{ in_build_scope('district_slug') }}
