-- No progress is ever lost: every app.progress_events row is in fct_student_progress
-- exactly once, whatever happened to its student in Clever (archived, moved, restored).
-- A district's build checks its own students' events: each one is stored exactly once,
-- in its district's part (the whole check runs in the deploy build).
-- depends_on: {{ ref('dim_users') }}, {{ ref('int_app_user_records') }}, {{ ref('int_marts__student_progress') }}
{% if build_scope() is none %}
select e.progress_event_id, count(f.progress_event_id) as rows_in_fact
from {{ source('app', 'progress_events') }} as e
left join {{ ref('fct_student_progress') }} as f on f.progress_event_id = e.progress_event_id
group by e.progress_event_id
having count(f.progress_event_id) <> 1
{% else %}
with students as (
    select clever_id from {{ ref('dim_users') }} where {{ in_build_scope('district_slug') }}
),

expected as (
    select e.progress_event_id
    from {{ source('app', 'progress_events') }} as e
    join students as s on s.clever_id = e.student_clever_id
    union
    select e.progress_event_id
    from {{ source('app', 'progress_events') }} as e
    join {{ ref('int_app_user_records') }} as a on a.app_user_id = e.app_user_id
    where e.student_clever_id is null and {{ in_build_scope('a.district_slug') }}
)

select x.progress_event_id, count(f.progress_event_id) as rows_in_fact
from expected as x
left join {{ ref('int_marts__student_progress') }} as f
  on f.progress_event_id = x.progress_event_id and {{ in_build_scope('f.district_slug') }}
group by x.progress_event_id
having count(f.progress_event_id) <> 1
{% endif %}
