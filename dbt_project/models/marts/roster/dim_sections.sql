{{ archived_dimension('int_state__sections', 'sections') }}
