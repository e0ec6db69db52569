-- Associations follow their section: every enrollment's section exists in dim_sections
-- in the same district, and an active enrollment never belongs to an archived section
-- (archiving a section archives its whole roster in the same build).
select
    e.district_slug,
    e.section_id,
    e.user_id,
    e.role,
    e.is_archived as enrollment_is_archived,
    s.is_archived as section_is_archived
from {{ ref('fct_enrollments') }} as e
left join {{ ref('dim_sections') }} as s
  on s.district_slug = e.district_slug
 and s.clever_id = e.section_id
where {{ in_build_scope('e.district_slug') }}
  and (s.clever_id is null or (not e.is_archived and s.is_archived))
