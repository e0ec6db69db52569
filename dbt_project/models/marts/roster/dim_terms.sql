{{ archived_dimension('int_state__terms', 'terms') }}
