{{ archived_dimension('int_state__courses', 'courses') }}
