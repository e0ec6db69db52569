{# Every progress event the application recorded, one row each, tied to the student's
   Clever ID: directly for events of accounts provisioned from Clever
   (student_clever_id), through user_matches for events of legacy accounts
   (app_user_id). Nothing here depends on the student being active: an event stays
   when its student is archived, moves school or section, or is restored, and no sync
   deletes one (the singular test assert_progress_events_all_kept checks every app
   event is here). An event whose account is not linked (yet) is kept with a NULL
   student_clever_id and link_source 'unlinked'.

   school_id is where the event happened: the school the application recorded, else
   its section's school, else the student's school in the version of their Clever
   record that was current when it happened (so a student who changed school keeps
   history at both). #}
with events as (
    select * from {{ source('app', 'progress_events') }}
),

users as (
    select district_slug, clever_id, is_student, is_archived from {{ ref('dim_users') }}
),

direct as ({{ clever_user_districts() }}),

resolved as (
    select
        e.*,
        coalesce(d.district_slug, a.district_slug) as district_slug,
        coalesce(e.student_clever_id, a.clever_id) as resolved_clever_id,
        case
            when e.student_clever_id is not null then 'clever_id'
            when a.clever_id is not null then 'user_match'
            else 'unlinked'
        end as link_source
    from events as e
    left join direct as d on d.clever_id = e.student_clever_id
    left join {{ ref('int_app_user_records') }} as a on e.student_clever_id is null and a.app_user_id = e.app_user_id
),

-- Versions of each student record, the first one open-ended into the past.
student_versions as (
    select
        district_slug,
        clever_id,
        student_school_id,
        case when row_number() over (partition by district_slug, clever_id order by dbt_valid_from) = 1
             then '-infinity'::timestamp else dbt_valid_from end as valid_from,
        coalesce(dbt_valid_to, 'infinity'::timestamp) as valid_to
    from {{ ref('snap_clever__users') }}
),

school_then as (
    select r.progress_event_id, v.student_school_id
    from resolved as r
    join student_versions as v
      on v.district_slug = r.district_slug and v.clever_id = r.resolved_clever_id
     and (r.occurred_at at time zone 'UTC') >= v.valid_from and (r.occurred_at at time zone 'UTC') < v.valid_to
)

select
    r.progress_event_id,
    r.district_slug,
    r.resolved_clever_id as student_clever_id,
    p.person_id,
    r.app_user_id,
    r.link_source,
    r.activity,
    r.score,
    r.completed,
    r.occurred_at,
    r.recorded_at,
    r.section_clever_id as section_id,
    coalesce(r.school_clever_id, sec.school_id, st.student_school_id) as school_id,
    case
        when r.school_clever_id is not null then 'recorded'
        when sec.school_id is not null then 'section'
        when st.student_school_id is not null then 'student_record_then'
    end as school_id_source,
    u.is_archived as student_is_archived
from resolved as r
left join {{ ref('int_people') }} as p
  on p.district_slug = r.district_slug and p.clever_id = r.resolved_clever_id
left join users as u on u.district_slug = r.district_slug and u.clever_id = r.resolved_clever_id
left join {{ ref('dim_sections') }} as sec
  on sec.district_slug = r.district_slug and sec.clever_id = r.section_clever_id
left join school_then as st on st.progress_event_id = r.progress_event_id
