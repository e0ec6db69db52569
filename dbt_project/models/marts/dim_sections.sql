{{ archived_dimension('snap_clever__sections', 'sections') }}
