-- Records Clever reissued under a new ID are linked only safely: a user pair, or an
-- ambiguous one, only by a reviewer's confirmation; and in a line of reissues each record
-- replaces at most one record and is replaced by at most one.
select district_slug, data_type, old_clever_id, new_clever_id, 'linked without a reviewer' as problem
from {{ ref('rpt_reissued_ids') }}
where is_linked and status <> 'confirmed'
  and (data_type = 'users' or candidates_for_old > 1 or candidates_for_new > 1)
  and {{ in_build_scope('district_slug') }}
union all
select district_slug, data_type, old_clever_id, min(new_clever_id), 'replaced by two linked records'
from {{ ref('rpt_reissued_ids') }}
where is_linked and {{ in_build_scope('district_slug') }}
group by district_slug, data_type, old_clever_id
having count(*) > 1
union all
select district_slug, data_type, min(old_clever_id), new_clever_id, 'replaces two linked records'
from {{ ref('rpt_reissued_ids') }}
where is_linked and {{ in_build_scope('district_slug') }}
group by district_slug, data_type, new_clever_id
having count(*) > 1
