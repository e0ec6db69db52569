{{ archived_dimension('int_state__users', 'users', lineages={'lineage_id': ['clever_id', 'users']}) }}
