{{ config(meta={'indexes': [{'columns': ['district_slug', 'data_type', 'clever_id'], 'unique': true}]}) }}
{# The records of each linked line of reissues (rpt_reissued_ids.is_linked), one row per
   record, with the line's first Clever ID. A record replaces at most one record and is
   replaced by at most one (a pair linked twice over is a 'conflict', not linked), and a
   new record is first seen after the one it replaces, so every line is a chain from its
   first record. Records in no linked pair have no row: their lineage is their own ID.
   The marts join it when read (dim_terms, dim_courses, dim_users: lineage_id; dim_sections,
   fct_enrollments, fct_student_progress: the lineage of the term, course, user or student). #}
with recursive links as (
    select district_slug, data_type, old_clever_id, new_clever_id
    from {{ ref('rpt_reissued_ids') }}
    where is_linked and {{ in_build_scope('district_slug') }}
),

lineage (district_slug, data_type, clever_id, lineage_id, reissued_from, generation) as (
    select distinct l.district_slug, l.data_type, l.old_clever_id as clever_id, l.old_clever_id as lineage_id,
           null::text as reissued_from, 0 as generation
    from links as l
    where not exists (select 1 from links as p
                      where p.district_slug = l.district_slug and p.data_type = l.data_type
                        and p.new_clever_id = l.old_clever_id)
    union all
    select l.district_slug, l.data_type, l.new_clever_id, c.lineage_id, c.clever_id, c.generation + 1
    from lineage as c
    join links as l
      on l.district_slug = c.district_slug and l.data_type = c.data_type and l.old_clever_id = c.clever_id
    where c.generation < 1000  -- cannot loop (see above); bounded all the same
)

select district_slug, data_type, clever_id, lineage_id, reissued_from, generation
from lineage
