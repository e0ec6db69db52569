{{ archived_dimension('snap_clever__schools', 'schools') }}
