{# Associations follow their sections' extraction: the sections endpoint's approval
   is what archives or restores them. #}
{{ archived_dimension('snap_clever__section_enrollments', 'sections',
                      keys=['district_slug', 'section_id', 'user_id', 'role']) }}
