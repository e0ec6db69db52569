{{ archived_dimension('snap_clever__districts', 'districts') }}
