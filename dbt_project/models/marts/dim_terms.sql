{{ archived_dimension('snap_clever__terms', 'terms') }}
