{# Records Clever reissues under a new ID (docs/ARCHITECTURE.md#reissued-ids): in one
   sync a record disappears and another appears with the same identifying data. Clever
   says terms and courses may come back under a new ID; a student re-entered in the SIS
   can too. Each Clever ID stays the key of its own rows; a pair that is linked (by the
   district's setting for terms and courses, by a reviewer for any type) reads as one
   history through the lineage columns of the marts.

   The data types looked at: (data_type, snapshot, state table). #}
{% macro reissue_data_types() %}
{{ return([('terms', 'snap_clever__terms', 'int_state__terms'),
           ('courses', 'snap_clever__courses', 'int_state__courses'),
           ('users', 'snap_clever__users', 'int_state__users')]) }}
{% endmacro %}

{# In int_reissue__candidates: int_reissue__scanned, how far its last build read the
   snapshots (none: read everything, on its first build or a full refresh). By name, not
   ref(): that table depends on the candidates, to be written after them. #}
{% macro reissue_scanned_relation() %}
    {%- if not execute or not is_incremental() or scoped_full_refresh() -%}{{ return(none) }}{%- endif -%}
    {{ return(adapter.get_relation(database=this.database, schema=this.schema, identifier='int_reissue__scanned')) }}
{% endmacro %}

{# The versions `snapshot` wrote for `data_type` since the district's last scan (`scanned`:
   district_slug, data_type, scanned_through). Scoped, per district with its slug and
   mark as constants (the mark an initplan), so the snapshot's (district_slug,
   dbt_valid_from) index reads only those versions; a join would read every version of
   the district. Unscoped (the deploy build), a join. #}
{% macro reissue_versions_since_scan(snapshot, data_type, scanned) %}
    {%- set scope = build_scope() -%}
    {%- if scope is none %}
    select v.*
    from {{ snapshot }} as v
    left join {{ scanned }} as s on s.district_slug = v.district_slug and s.data_type = '{{ data_type }}'
    where v.dbt_valid_from > coalesce(s.scanned_through, '-infinity')
    {%- else -%}
    {%- for slug in scope %}
    select v.*
    from {{ snapshot }} as v
    where v.district_slug = '{{ slug }}'
      and v.dbt_valid_from > coalesce((select s.scanned_through from {{ scanned }} as s
                                       where s.district_slug = '{{ slug }}' and s.data_type = '{{ data_type }}'),
                                      '-infinity')
    {% if not loop.last %}union all{% endif %}
    {%- endfor -%}
    {%- endif %}
{% endmacro %}

{# One row per identifying key of each record in `versions` (snapshot rows of
   `data_type`): district_slug, clever_id, dbt_valid_from, sync_run_id, side,
   matched_on (what the key is made of) and key (compared for equality; %L quotes each
   part, so no two different lists of parts give the same key). Parts are compared
   trimmed and case-insensitively, as matching compares identifiers; a record without the
   required part (a name, an ID) has no key of that kind.
   - terms: name, start and end date within the Clever district (a missing date must be
     missing on both);
   - courses: name and number within the Clever district. Clever's course has no school
     (it belongs to the district), so two schools' courses of the same name and number
     are one key: several of them going and coming at once are ambiguous, never linked;
   - users: within the district, per role the user has, any one of its SIS ID (staff ID
     for staff), state ID or email, each equal and non-empty; a student's SIS ID never
     pairs with a teacher's. #}
{% macro reissue_identity_keys(data_type, versions) %}
{% if data_type == 'terms' %}
select district_slug, clever_id, dbt_valid_from, sync_run_id, side, 'name_and_dates' as matched_on,
       format('%L|%L|%L|%L', district_id, {{ id_key('name') }}, start_date, end_date) as key
from {{ versions }}
where {{ id_key('name') }} is not null
{% elif data_type == 'courses' %}
select district_slug, clever_id, dbt_valid_from, sync_run_id, side, 'name_and_number' as matched_on,
       format('%L|%L|%L', district_id, {{ id_key('name') }}, {{ id_key('number') }}) as key
from {{ versions }}
where {{ id_key('name') }} is not null
{% elif data_type == 'users' %}
select v.district_slug, v.clever_id, v.dbt_valid_from, v.sync_run_id, v.side, k.matched_on,
       format('%L|%L|%L|%L', v.district_id, k.role, k.matched_on, k.key) as key
from {{ versions }} as v
cross join lateral (values
    ('student', 'sis_id', {{ id_key('v.student_sis_id') }}),
    ('teacher', 'sis_id', {{ id_key('v.teacher_sis_id') }}),
    ('staff', 'sis_id', {{ id_key('v.staff_id') }}),
    ('contact', 'sis_id', {{ id_key('v.contact_sis_id') }}),
    ('student', 'state_id', {{ id_key('v.student_state_id') }}),
    ('teacher', 'state_id', {{ id_key('v.teacher_state_id') }})
) as k (role, matched_on, key)
where k.key is not null
union all
select v.district_slug, v.clever_id, v.dbt_valid_from, v.sync_run_id, v.side, 'email',
       format('%L|%L|%L|%L', v.district_id, r.role, 'email', {{ email_key('v.email') }})
from {{ versions }} as v
cross join lateral unnest(v.roles) as r (role)
where {{ email_key('v.email') }} is not null
{% else %}
{{ exceptions.raise_compiler_error("reissued ids: no identifying data for " ~ data_type) }}
{% endif %}
{% endmacro %}

{# A record's label for the review: a term's name and dates, a course's name and number,
   a user's name. `alias` is the state table's row. #}
{% macro reissue_label(data_type, alias) %}
{%- if data_type == 'terms' -%}
concat_ws(' ', {{ alias }}.name, '(' || nullif(concat_ws(' to ', {{ alias }}.start_date, {{ alias }}.end_date), '') || ')')
{%- elif data_type == 'courses' -%}
concat_ws(' ', {{ alias }}.name, '(' || {{ alias }}.number || ')')
{%- else -%}
concat_ws(' ', {{ alias }}.first_name, {{ alias }}.last_name)
{%- endif -%}
{% endmacro %}
