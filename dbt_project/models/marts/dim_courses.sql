{{ archived_dimension('snap_clever__courses', 'courses') }}
