{{ config(materialized='view') }}
{# Every progress event the application recorded, one row each, tied to the student's
   Clever ID: directly for events of accounts provisioned from Clever
   (student_clever_id), through dim_user_matches for events of legacy accounts
   (app_user_id). Nothing here depends on the student being active: an event stays
   when its student is archived, moves school or section, or is restored, and no sync
   deletes one (the singular test assert_progress_events_all_kept checks every app
   event is here). An event whose account is not linked (yet) is kept with a NULL
   student_clever_id and link_source 'unlinked'.

   school_id is where the event happened: the school the application recorded, else
   its section's school, else the student's school in the version of their Clever
   record that was current when it happened (so a student who changed school keeps
   history at both).

   A view of two parts (macros/app_marts.sql): the events of the configured districts'
   students, stored per district (int_marts__student_progress, rebuilt by each
   district's build), and every other event, computed when read, with a NULL
   district_slug (accounts not linked, Clever IDs in no configured district, and events
   recorded since their district's last build). #}
select * from {{ ref('int_marts__student_progress') }}
union all
select * from (
{{ student_progress_rows(remainder=true) }}
) as remainder
