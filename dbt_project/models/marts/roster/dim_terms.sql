{{ archived_dimension('int_state__terms', 'terms', lineages={'lineage_id': ['clever_id', 'terms']}) }}
