{{ archived_dimension('int_state__sections', 'sections',
                      lineages={'term_lineage_id': ['term_id', 'terms'], 'course_lineage_id': ['course_id', 'courses']}) }}
