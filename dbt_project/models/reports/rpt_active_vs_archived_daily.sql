{{ config(materialized='district_partition') }}
{# Active and archived records per district and data type at the end of every day (UTC)
   from the district's first sync to the day of the build, plus what happened that day:
   the running sums of the per-day changes (int_reports__daily_changes, which a build
   updates only for the days since the last one), so it costs days, not versions. A
   district's build rewrites its own rows only. #}
with daily as (
    select * from {{ ref('int_reports__daily_changes') }}
    where {{ in_build_scope('district_slug') }}
),

spine as (
    select f.district_slug, f.data_type, d::date as day
    from (select district_slug, data_type, min(day) as first_day from daily group by district_slug, data_type) as f
    cross join lateral generate_series(f.first_day, (now() at time zone 'UTC')::date, interval '1 day') as d
)

select
    s.district_slug,
    s.data_type,
    s.day,
    sum(coalesce(d.active_delta, 0)) over running as active_records,
    sum(coalesce(d.archived_delta, 0)) over running as archived_records,
    coalesce(d.added, 0) as added_that_day,
    coalesce(d.archived, 0) as archived_that_day,
    coalesce(d.restored, 0) as restored_that_day
from spine as s
left join daily as d
  on d.district_slug = s.district_slug and d.data_type = s.data_type and d.day = s.day
window running as (partition by s.district_slug, s.data_type order by s.day)
