{{ archived_dimension('int_state__schools', 'schools') }}
