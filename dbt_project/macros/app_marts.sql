{# The marts built from the application's records (schema app) that may hold rows of no
   configured district: progress of accounts not linked to Clever, groups and records
   of app districts not linked to a Clever district. A district's build can only own
   rows of its districts, so each of these marts is two parts (docs/ARCHITECTURE.md):

   - a district_partition table in clever_intermediate (int_marts__*, int_reports__*),
     the rows that belong to a configured district, rebuilt by that district's build;
   - the mart, a view: those rows, plus every other app row computed when read, with no
     district (`remainder`: the rows the table does not hold, so each app row is in the
     mart exactly once). A BI query that filters on a district skips that part.

   Each macro below is that mart's one SQL, for the table (remainder=false) and for the
   view's second part (remainder=true, where the district is NULL and every join to
   Clever records by district therefore finds nothing). #}

{# Every progress event, tied to the student's Clever ID (see fct_student_progress). #}
{% macro student_progress_rows(remainder) %}
with
{% if remainder %}
events as (
    select e.*
    from {{ source('app', 'progress_events') }} as e
    where not exists (select 1 from {{ ref('int_marts__student_progress') }} as t
                      where t.progress_event_id = e.progress_event_id)
),

resolved as (
    select
        e.*,
        null::text as district_slug,
        e.student_clever_id as resolved_clever_id,
        case when e.student_clever_id is not null then 'clever_id' else 'unlinked' end as link_source
    from events as e
),
{% else %}
direct as ({{ clever_user_districts() }}),

-- the events of the build's students: recorded with their Clever ID, or by an app
-- account linked to one of them
events as (
    select e.*
    from {{ source('app', 'progress_events') }} as e
    join direct as d on d.clever_id = e.student_clever_id
    union all
    select e.*
    from {{ source('app', 'progress_events') }} as e
    join {{ ref('int_app_user_records') }} as a on a.app_user_id = e.app_user_id
    where e.student_clever_id is null and {{ in_build_scope('a.district_slug') }}
),

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

users as (
    select district_slug, clever_id, is_student, is_archived from {{ ref('dim_users') }}
    where {{ in_build_scope('district_slug') }}
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
    where {{ in_build_scope('district_slug') }}
      and clever_id in (select resolved_clever_id from resolved)
),

school_then as (
    select r.progress_event_id, v.student_school_id
    from resolved as r
    join student_versions as v
      on v.district_slug = r.district_slug and v.clever_id = r.resolved_clever_id
     and (r.occurred_at at time zone 'UTC') >= v.valid_from and (r.occurred_at at time zone 'UTC') < v.valid_to
),
{% endif %}

event_rows as (
    select
        r.progress_event_id,
        r.district_slug,
        r.resolved_clever_id as student_clever_id,
        {% if remainder %}null::text{% else %}p.person_id{% endif %} as person_id,
        r.app_user_id,
        r.link_source,
        r.activity,
        r.score,
        r.completed,
        r.occurred_at,
        r.recorded_at,
        r.section_clever_id as section_id,
        {% if remainder %}
        r.school_clever_id as school_id,
        case when r.school_clever_id is not null then 'recorded' end as school_id_source,
        null::boolean as student_is_archived,
        r.resolved_clever_id as student_lineage_id
        {% else %}
        coalesce(r.school_clever_id, sec.school_id, st.student_school_id) as school_id,
        case
            when r.school_clever_id is not null then 'recorded'
            when sec.school_id is not null then 'section'
            when st.student_school_id is not null then 'student_record_then'
        end as school_id_source,
        u.is_archived as student_is_archived,
        -- one history across a reissue linked in this district (rpt_reissued_ids)
        coalesce(lu.lineage_id, r.resolved_clever_id) as student_lineage_id
        {% endif %}
    from resolved as r
    {% if not remainder %}
    left join {{ ref('int_people') }} as p
      on p.district_slug = r.district_slug and p.clever_id = r.resolved_clever_id
    left join users as u on u.district_slug = r.district_slug and u.clever_id = r.resolved_clever_id
    left join {{ ref('dim_sections') }} as sec
      on sec.district_slug = r.district_slug and sec.clever_id = r.section_clever_id
    left join school_then as st on st.progress_event_id = r.progress_event_id
    left join {{ ref('int_reissue__lineage') }} as lu
      on lu.district_slug = r.district_slug and lu.data_type = 'users' and lu.clever_id = r.resolved_clever_id
    {% endif %}
)

select * from event_rows
{% endmacro %}


{# Members of the application's groups, resolved to Clever IDs (see fct_group_members).
   A group belongs to the district its app district is linked to. #}
{% macro group_members_rows(remainder) %}
with groups as (
    {% if remainder %}
    select g.*, null::text as district_slug
    from {{ source('app', 'groups') }} as g
    where not exists (select 1 from {{ ref('int_marts__group_members') }} as t where t.group_id = g.group_id)
    {% else %}
    select g.*, dm.district_slug
    from {{ source('app', 'groups') }} as g
    join {{ ref('dim_district_matches') }} as dm on dm.app_district_id = g.app_district_id
    where {{ in_build_scope('dm.district_slug') }}
    {% endif %}
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
    join groups as g on g.group_id = m.group_id
    left join {{ ref('int_app_user_records') }} as a on m.user_clever_id is null and a.app_user_id = m.app_user_id
)

select
    m.group_member_id,
    g.group_id,
    g.name as group_name,
    g.kind as group_kind,
    g.app_district_id,
    g.district_slug,
    g.section_clever_id as section_id,
    {% if remainder %}
    null::boolean as section_is_archived,
    {% else %}
    sec.is_archived as section_is_archived,
    {% endif %}
    m.app_user_id,
    m.member_clever_id,
    m.member_link_source,
    {% if remainder %}
    null::boolean as member_is_archived,
    case when g.kind = 'section_subgroup' then false end as member_on_section_roster,
    {% else %}
    u.is_archived as member_is_archived,
    case when g.kind = 'section_subgroup' then r.user_id is not null end as member_on_section_roster,
    {% endif %}
    m.added_by,
    m.added_at
from members as m
join groups as g on g.group_id = m.group_id
{% if not remainder %}
left join {{ ref('dim_sections') }} as sec
  on sec.district_slug = g.district_slug and sec.clever_id = g.section_clever_id
left join {{ ref('dim_users') }} as u
  on u.district_slug = g.district_slug and u.clever_id = m.member_clever_id
left join (
    select distinct district_slug, section_id, user_id
    from {{ ref('fct_enrollments') }}
    where not is_archived and {{ in_build_scope('district_slug') }}
) as r
  on r.district_slug = g.district_slug and r.section_id = g.section_clever_id and r.user_id = m.member_clever_id
{% endif %}
{% endmacro %}
