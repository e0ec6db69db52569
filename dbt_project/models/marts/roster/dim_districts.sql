{{ archived_dimension('int_state__districts', 'districts') }}
