{# One row per Clever user with every role's fields side by side. A role a user does
   not have leaves its columns NULL; so does any missing optional field. #}
{% set student = "raw #> '{roles,student}'" %}
{% set teacher = "raw #> '{roles,teacher}'" %}
{% set staff = "raw #> '{roles,staff}'" %}
{% set admin = "raw #> '{roles,district_admin}'" %}
{% set contact = "raw #> '{roles,contact}'" %}
with records as ({{ current_records('users') }})
select
    district_slug,
    clever_id,
    district_id,
    sync_run_id,
    synced_at,
    record_hash,
    raw,
    {{ txt("raw ->> 'email'") }} as email,
    {{ txt("raw #>> '{name,first}'") }} as first_name,
    {{ txt("raw #>> '{name,middle}'") }} as middle_name,
    {{ txt("raw #>> '{name,last}'") }} as last_name,
    coalesce(array(
        select role from jsonb_each(coalesce(raw -> 'roles', '{}'::jsonb)) as r(role, detail)
        where jsonb_typeof(detail) = 'object' order by role), '{}') as roles,
    jsonb_typeof({{ student }}) = 'object' as is_student,
    jsonb_typeof({{ teacher }}) = 'object' as is_teacher,
    jsonb_typeof({{ staff }}) = 'object' as is_staff,
    jsonb_typeof({{ admin }}) = 'object' as is_district_admin,
    jsonb_typeof({{ contact }}) = 'object' as is_contact,
    {{ ts("raw ->> 'created'") }} as clever_created_at,
    {{ ts("raw ->> 'last_modified'") }} as clever_last_modified_at,
    -- student role
    {{ txt(student ~ " ->> 'sis_id'") }} as student_sis_id,
    {{ txt(student ~ " ->> 'state_id'") }} as student_state_id,
    {{ txt(student ~ " ->> 'student_number'") }} as student_number,
    {{ txt(student ~ " ->> 'school'") }} as student_school_id,
    {{ text_array(student ~ " -> 'schools'") }} as student_school_ids,
    {{ txt(student ~ " ->> 'grade'") }} as student_grade,
    {{ txt(student ~ " ->> 'graduation_year'") }} as student_graduation_year,
    clever_staging.try_date({{ student }} ->> 'dob', 'MM/DD/YYYY') as student_dob,
    {{ txt(student ~ " ->> 'gender'") }} as student_gender,
    {{ txt(student ~ " ->> 'race'") }} as student_race,
    {{ txt(student ~ " ->> 'hispanic_ethnicity'") }} as student_hispanic_ethnicity,
    {{ txt(student ~ " ->> 'ell_status'") }} as student_ell_status,
    {{ txt(student ~ " ->> 'frl_status'") }} as student_frl_status,
    {{ txt(student ~ " ->> 'iep_status'") }} as student_iep_status,
    {{ txt(student ~ " ->> 'section_504_status'") }} as student_section_504_status,
    {{ txt(student ~ " ->> 'gifted_status'") }} as student_gifted_status,
    {{ txt(student ~ " ->> 'home_language'") }} as student_home_language,
    {{ txt(student ~ " #>> '{preferred_name,first}'") }} as student_preferred_first_name,
    {{ txt(student ~ " #>> '{preferred_name,last}'") }} as student_preferred_last_name,
    {{ txt(student ~ " #>> '{credentials,district_username}'") }} as student_district_username,
    -- teacher role
    {{ txt(teacher ~ " ->> 'sis_id'") }} as teacher_sis_id,
    {{ txt(teacher ~ " ->> 'state_id'") }} as teacher_state_id,
    {{ txt(teacher ~ " ->> 'teacher_number'") }} as teacher_number,
    {{ txt(teacher ~ " ->> 'title'") }} as teacher_title,
    {{ txt(teacher ~ " ->> 'school'") }} as teacher_school_id,
    {{ text_array(teacher ~ " -> 'schools'") }} as teacher_school_ids,
    {{ txt(teacher ~ " #>> '{credentials,district_username}'") }} as teacher_district_username,
    -- staff role
    {{ txt(staff ~ " ->> 'staff_id'") }} as staff_id,
    {{ txt(staff ~ " ->> 'title'") }} as staff_title,
    {{ txt(staff ~ " ->> 'department'") }} as staff_department,
    {{ text_array(staff ~ " -> 'schools'") }} as staff_school_ids,
    -- district admin role
    {{ txt(admin ~ " ->> 'title'") }} as district_admin_title,
    -- contact role
    {{ txt(contact ~ " ->> 'sis_id'") }} as contact_sis_id,
    {{ txt(contact ~ " ->> 'phone'") }} as contact_phone,
    {{ txt(contact ~ " ->> 'phone_type'") }} as contact_phone_type,
    (select coalesce(array_agg(rel ->> 'student'), '{}') from jsonb_array_elements(
        case when jsonb_typeof({{ contact }} -> 'student_relationships') = 'array'
             then {{ contact }} -> 'student_relationships' else '[]'::jsonb end) as rel) as contact_student_ids
from records
