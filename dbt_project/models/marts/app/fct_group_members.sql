{{ config(materialized='view') }}
{# Members of the groups admins and teachers made in the application (app.groups:
   custom groups and subgroups of a Clever section), resolved to Clever IDs. The sync
   never changes these: a member whom Clever archives, or who leaves the section a
   subgroup splits, stays a member, flagged by member_is_archived and
   member_on_section_roster, until someone edits the group.

   A view of two parts (macros/app_marts.sql): the groups of app districts linked to a
   configured district, stored per district (int_marts__group_members), and every other
   group, computed when read, with a NULL district_slug. #}
select * from {{ ref('int_marts__group_members') }}
union all
select * from (
{{ group_members_rows(remainder=true) }}
) as remainder
