-- The latest day of rpt_active_vs_archived_daily is the marts' current state.
{% set marts = [('districts', 'dim_districts'), ('schools', 'dim_schools'), ('users', 'dim_users'),
                ('sections', 'dim_sections'), ('terms', 'dim_terms'), ('courses', 'dim_courses'),
                ('enrollments', 'fct_enrollments')] %}
with current_state as (
    {% for data_type, mart in marts %}
    select district_slug, '{{ data_type }}' as data_type,
           count(*) filter (where not is_archived) as active_records,
           count(*) filter (where is_archived) as archived_records
    from {{ ref(mart) }}
    where {{ in_build_scope('district_slug') }}
    group by district_slug
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

latest as (
    select distinct on (district_slug, data_type) district_slug, data_type, active_records, archived_records
    from {{ ref('rpt_active_vs_archived_daily') }}
    where {{ in_build_scope('district_slug') }}
    order by district_slug, data_type, day desc
)

select coalesce(c.district_slug, l.district_slug) as district_slug, coalesce(c.data_type, l.data_type) as data_type
from current_state as c
full join latest as l on l.district_slug = c.district_slug and l.data_type = c.data_type
where c.active_records is distinct from l.active_records
   or c.archived_records is distinct from l.archived_records
