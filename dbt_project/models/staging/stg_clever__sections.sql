select
    {{ record_columns() }},
    raw ->> 'name' as name,
    raw ->> 'school' as school_id,
    {{ txt("raw ->> 'term_id'") }} as term_id,
    {{ txt("raw ->> 'course'") }} as course_id,
    {{ txt("raw ->> 'teacher'") }} as primary_teacher_id,
    {{ text_array("raw -> 'teachers'") }} as teacher_ids,
    {{ text_array("raw -> 'students'") }} as student_ids,
    {{ txt("raw ->> 'sis_id'") }} as sis_id,
    {{ txt("raw ->> 'section_number'") }} as section_number,
    {{ txt("raw ->> 'period'") }} as period,
    {{ txt("raw ->> 'subject'") }} as subject,
    {{ txt("raw ->> 'grade'") }} as grade,
    {{ ts("raw ->> 'created'") }} as clever_created_at,
    {{ ts("raw ->> 'last_modified'") }} as clever_last_modified_at,
    {{ json_or_null("raw -> 'ext'") }} as ext,
    -- v3.1
    {{ bool_or_null("raw #>> '{lms_status,synced_in_lms}'") }} as synced_in_lms
from ({{ current_records('sections') }}) as records
