{# Members of the groups admins and teachers made in the application (app.groups:
   custom groups and subgroups of a Clever section), resolved to Clever IDs. The sync
   never changes these: a member whom Clever archives, or who leaves the section a
   subgroup splits, stays a member, flagged by member_is_archived and
   member_on_section_roster, until someone edits the group. #}
with groups as (
    select g.*, dm.district_slug
    from {{ source('app', 'groups') }} as g
    left join {{ ref('district_matches') }} as dm on dm.app_district_id = g.app_district_id
),

members as (
    select
        m.group_member_id,
        m.group_id,
        m.app_user_id,
        coalesce(m.user_clever_id, a.clever_id) as member_clever_id,
        case
            when m.user_clever_id is not null then 'clever_id'
            when a.clever_id is not null then 'user_match'
            else 'unlinked'
        end as member_link_source,
        m.added_by,
        m.added_at
    from {{ source('app', 'group_members') }} as m
    left join {{ ref('int_app_user_records') }} as a on m.user_clever_id is null and a.app_user_id = m.app_user_id
),

active_rosters as (
    select distinct district_slug, section_id, user_id
    from {{ ref('fct_enrollments') }}
    where not is_archived
)

select
    m.group_member_id,
    g.group_id,
    g.name as group_name,
    g.kind as group_kind,
    g.app_district_id,
    g.district_slug,
    g.section_clever_id as section_id,
    sec.is_archived as section_is_archived,
    m.app_user_id,
    m.member_clever_id,
    m.member_link_source,
    u.is_archived as member_is_archived,
    case when g.kind = 'section_subgroup' then r.user_id is not null end as member_on_section_roster,
    m.added_by,
    m.added_at
from members as m
join groups as g on g.group_id = m.group_id
left join {{ ref('dim_sections') }} as sec
  on sec.district_slug = g.district_slug and sec.clever_id = g.section_clever_id
left join {{ ref('dim_users') }} as u
  on u.district_slug = g.district_slug and u.clever_id = m.member_clever_id
left join active_rosters as r
  on r.district_slug = g.district_slug and r.section_id = g.section_clever_id and r.user_id = m.member_clever_id
