-- Every rollover row accounts for each student and section exactly once.
select district_slug, comparison, from_period, school_id
from {{ ref('rpt_rollover') }}
where {{ in_build_scope('district_slug') }}
  and (from_students <> students_stayed + students_changed_school_out + students_not_reenrolled
    or to_students <> students_stayed + students_changed_school_in + new_students
    or from_sections <> sections_ended + sections_continuing
    or to_sections <> sections_started + sections_continuing
    or (is_district_total and students_changed_school_in <> students_changed_school_out))
