-- A record was first seen no later than it was last seen, and an archived record was
-- last seen (the approved extraction before the one that archived it) no later than it
-- was archived. NULL last_seen_at fails too.
{% set marts = ['dim_districts', 'dim_schools', 'dim_users', 'dim_sections', 'dim_terms', 'dim_courses'] %}
{% for mart in marts %}
select '{{ mart }}' as mart, district_slug, clever_id as record_key, first_seen_at, last_seen_at, archived_at
from {{ ref(mart) }}
where {{ in_build_scope('district_slug') }} and (last_seen_at is null or first_seen_at > last_seen_at
   or (is_archived and last_seen_at > archived_at))
union all
{% endfor %}
select 'fct_enrollments' as mart, district_slug, section_id || ':' || user_id || ':' || role as record_key,
       first_seen_at, last_seen_at, archived_at
from {{ ref('fct_enrollments') }}
where {{ in_build_scope('district_slug') }} and (last_seen_at is null or first_seen_at > last_seen_at
   or (is_archived and last_seen_at > archived_at))
