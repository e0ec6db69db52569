{# Student-teacher associations, keyed by (district, section, user, role); documented in
   clever_snapshots.yml. An association is derived from its section's record alone, so
   the comparison covers only the rosters of sections whose record_hash changed since the
   last snapshot, or that appeared or disappeared (macros/snapshot_staging_table.sql,
   compare_scope); other sections' associations cannot have changed. #}
{% snapshot snap_clever__section_enrollments %}
{{ config(
    unique_key=['district_slug', 'section_id', 'user_id', 'role'],
    strategy='check',
    check_cols=['record_hash'],
    hard_deletes='new_record',
    meta={'compare_scope': {'column': 'section_id', 'parent': 'stg_clever__sections'},
          'event_keys': {'endpoint': 'sections', 'column': 'section_id'}},
    post_hook="{{ save_compare_scope() }}",
) }}
-- depends_on: {{ ref('stg_clever__sections') }}
select * from {{ ref('stg_clever__section_enrollments') }}
{% endsnapshot %}
