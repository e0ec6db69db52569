-- Every mart row: archived rows have archived_at, active rows (including restored ones)
-- have archived_at NULL. Returns the offending rows, one line each, naming the mart.
{% set marts = ['dim_districts', 'dim_schools', 'dim_users', 'dim_sections', 'dim_terms', 'dim_courses'] %}
{% for mart in marts %}
select '{{ mart }}' as mart, district_slug, clever_id as record_key, is_archived, archived_at
from {{ ref(mart) }}
where {{ in_build_scope('district_slug') }}
  and ((is_archived and archived_at is null) or (not is_archived and archived_at is not null))
union all
{% endfor %}
select 'fct_enrollments' as mart, district_slug, section_id || ':' || user_id || ':' || role as record_key,
       is_archived, archived_at
from {{ ref('fct_enrollments') }}
where {{ in_build_scope('district_slug') }}
  and ((is_archived and archived_at is null) or (not is_archived and archived_at is not null))
