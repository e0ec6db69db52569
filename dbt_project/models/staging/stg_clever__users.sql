{# One row per Clever user with every role's fields side by side. A role a user does
   not have leaves its columns NULL; so does any missing optional field. #}
{% set student = "raw #> '{roles,student}'" %}
{% set teacher = "raw #> '{roles,teacher}'" %}
{% set staff = "raw #> '{roles,staff}'" %}
{% set admin = "raw #> '{roles,district_admin}'" %}
{% set contact = "raw #> '{roles,contact}'" %}
select
    {{ record_columns() }},
    {{ txt("raw ->> 'email'") }} as email,
    {{ txt("raw #>> '{name,first}'") }} as first_name,
    {{ txt("raw #>> '{name,middle}'") }} as middle_name,
    {{ txt("raw #>> '{name,last}'") }} as last_name,
    coalesce(array(
        select r.role from jsonb_each(coalesce(raw -> 'roles', '{}'::jsonb)) as r (role, detail)
        where jsonb_typeof(r.detail) = 'object' order by r.role), '{}') as roles,
    jsonb_typeof({{ student }}) = 'object' as is_student,
    jsonb_typeof({{ teacher }}) = 'object' as is_teacher,
    jsonb_typeof({{ staff }}) = 'object' as is_staff,
    jsonb_typeof({{ admin }}) = 'object' as is_district_admin,
    jsonb_typeof({{ contact }}) = 'object' as is_contact,
    {{ ts("raw ->> 'created'") }} as clever_created_at,
    {{ ts("raw ->> 'last_modified'") }} as clever_last_modified_at,
    {{ bool_or_null("raw #>> '{lms_status,synced_in_lms}'") }} as synced_in_lms,
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
    {{ txt("raw #>> '{roles,student,legacy_id}'") }} as student_legacy_id,
    {{ ts("raw #>> '{roles,student,created}'") }} as student_created_at,
    {{ ts("raw #>> '{roles,student,last_modified}'") }} as student_last_modified_at,
    {{ txt("raw #>> '{roles,student,location,address}'") }} as student_address,
    {{ txt("raw #>> '{roles,student,location,city}'") }} as student_city,
    {{ txt("raw #>> '{roles,student,location,state}'") }} as student_state,
    {{ txt("raw #>> '{roles,student,location,zip}'") }} as student_zip,
    {{ num("raw #>> '{roles,student,location,lat}'") }} as student_lat,
    {{ num("raw #>> '{roles,student,location,lon}'") }} as student_lon,
    {{ json_or_null("raw #> '{roles,student,enrollments}'") }} as student_enrollments,
    {{ json_or_null("raw #> '{roles,student,ext}'") }} as student_ext,
    {{ txt("raw #>> '{roles,student,home_language_code}'") }} as student_home_language_code,
    {{ txt("raw #>> '{roles,student,preferred_name,middle}'") }} as student_preferred_middle_name,
    {{ txt("raw #>> '{roles,student,disability,disability_code}'") }} as student_disability_code,
    {{ txt("raw #>> '{roles,student,disability,disability_status}'") }} as student_disability_status,
    {{ txt("raw #>> '{roles,student,disability,disability_type}'") }} as student_disability_type,
    -- teacher role
    {{ txt(teacher ~ " ->> 'sis_id'") }} as teacher_sis_id,
    {{ txt(teacher ~ " ->> 'state_id'") }} as teacher_state_id,
    {{ txt(teacher ~ " ->> 'teacher_number'") }} as teacher_number,
    {{ txt(teacher ~ " ->> 'title'") }} as teacher_title,
    {{ txt(teacher ~ " ->> 'school'") }} as teacher_school_id,
    {{ text_array(teacher ~ " -> 'schools'") }} as teacher_school_ids,
    {{ txt(teacher ~ " #>> '{credentials,district_username}'") }} as teacher_district_username,
    {{ txt("raw #>> '{roles,teacher,legacy_id}'") }} as teacher_legacy_id,
    {{ ts("raw #>> '{roles,teacher,created}'") }} as teacher_created_at,
    {{ ts("raw #>> '{roles,teacher,last_modified}'") }} as teacher_last_modified_at,
    {{ txt("raw #>> '{roles,teacher,name,first}'") }} as teacher_first_name,
    {{ txt("raw #>> '{roles,teacher,name,middle}'") }} as teacher_middle_name,
    {{ txt("raw #>> '{roles,teacher,name,last}'") }} as teacher_last_name,
    {{ json_or_null("raw #> '{roles,teacher,ext}'") }} as teacher_ext,
    -- staff role
    {{ txt(staff ~ " ->> 'staff_id'") }} as staff_id,
    {{ txt(staff ~ " ->> 'title'") }} as staff_title,
    {{ txt(staff ~ " ->> 'department'") }} as staff_department,
    {{ text_array(staff ~ " -> 'schools'") }} as staff_school_ids,
    {{ txt("raw #>> '{roles,staff,credentials,district_username}'") }} as staff_district_username,
    {{ txt("raw #>> '{roles,staff,legacy_id}'") }} as staff_legacy_id,
    {{ text_array("raw #> '{roles,staff,roles}'") }} as staff_roles,
    {{ json_or_null("raw #> '{roles,staff,ext}'") }} as staff_ext,
    -- district admin role
    {{ txt(admin ~ " ->> 'title'") }} as district_admin_title,
    {{ txt("raw #>> '{roles,district_admin,legacy_id}'") }} as district_admin_legacy_id,
    -- contact role
    {{ txt(contact ~ " ->> 'sis_id'") }} as contact_sis_id,
    {{ txt(contact ~ " ->> 'phone'") }} as contact_phone,
    {{ txt(contact ~ " ->> 'phone_type'") }} as contact_phone_type,
    (select coalesce(array_agg(rel ->> 'student'), '{}') from jsonb_array_elements(
        case when jsonb_typeof({{ contact }} -> 'student_relationships') = 'array'
             then {{ contact }} -> 'student_relationships' else '[]'::jsonb end) as rel) as contact_student_ids,
    {{ json_or_null("raw #> '{roles,contact,student_relationships}'") }} as contact_student_relationships,
    {{ txt("raw #>> '{roles,contact,legacy_id}'") }} as contact_legacy_id
from ({{ current_records('users') }}) as records
