-- Every Clever user record, archived ones included, is listed by exactly one person in
-- dim_people: no record is lost by merging people.
with listed as (
    select district_slug, unnest(clever_ids) as clever_id, person_id
    from {{ ref('dim_people') }}
    where {{ in_build_scope('district_slug') }}
)

select u.district_slug, u.clever_id, count(l.person_id) as people
from {{ ref('dim_users') }} as u
left join listed as l on l.district_slug = u.district_slug and l.clever_id = u.clever_id
where {{ in_build_scope('u.district_slug') }}
group by u.district_slug, u.clever_id
having count(l.person_id) <> 1
