-- No progress is ever lost: every app.progress_events row is in fct_student_progress
-- exactly once, whatever happened to its student in Clever (archived, moved, restored).
select e.progress_event_id, count(f.progress_event_id) as rows_in_fact
from {{ source('app', 'progress_events') }} as e
left join {{ ref('fct_student_progress') }} as f on f.progress_event_id = e.progress_event_id
group by e.progress_event_id
having count(f.progress_event_id) <> 1
