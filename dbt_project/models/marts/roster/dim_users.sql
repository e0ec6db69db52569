{{ archived_dimension('int_state__users', 'users') }}
