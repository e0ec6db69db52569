{{ archived_dimension('snap_clever__users', 'users') }}
