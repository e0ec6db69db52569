{{ archived_dimension('int_state__enrollments', 'sections', lineages={'user_lineage_id': ['user_id', 'users']}) }}
