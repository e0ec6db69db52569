{{ archived_dimension('int_state__courses', 'courses', lineages={'lineage_id': ['clever_id', 'courses']}) }}
