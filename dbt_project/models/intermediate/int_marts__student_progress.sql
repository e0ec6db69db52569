{{ config(unique_key='progress_event_id', pre_hook=no_nested_loops()) }}
{# The progress events of the configured districts' students, one row each: the stored
   part of fct_student_progress, rebuilt per district (macro student_progress_rows). #}
{{ student_progress_rows(remainder=false) }}
