{{ archived_dimension('int_state__enrollments', 'sections') }}
