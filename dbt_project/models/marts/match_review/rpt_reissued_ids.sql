{# Records Clever may have reissued under a new ID, for review: one row per pair found
   (int_reissue__candidates) and per review naming no such pair, with what is decided
   for it at this build:
   - 'confirmed' / 'rejected': a reviewer's row in app.reissued_id_reviews (wins over the rest);
   - 'ambiguous': the old record matches several new ones, or the new one several old
     ones; never linked unless a reviewer confirms this pair;
   - 'linked_automatically': a term or course pair, the district's setting
     reissued_ids.link_automatically lists its type (clever_landing.match_settings);
     users are never linked without a reviewer;
   - 'suggested': waiting for a reviewer;
   - 'conflict': linked twice over (a record replaced by, or replacing, two linked
     records); none of those links holds until a reviewer rejects the wrong one;
   - 'review_ignored': a review naming a pair that was not found in the district.
   Linked pairs (is_linked) make the lineage of int_reissue__lineage. Labels come from
   the state tables (the marts read the lineage: reading them here would be a cycle). #}
{% set linking = "('confirmed', 'linked_automatically')" %}
with candidates as (
    select * from {{ ref('int_reissue__candidates') }} where {{ in_build_scope('district_slug') }}
),

reviews as (
    select * from {{ source('app', 'reissued_id_reviews') }} where {{ in_build_scope('district_slug') }}
),

settings as (
    select district_slug, link_reissued_ids_automatically as linked_types
    from {{ source('clever_landing', 'match_settings') }}
    where {{ in_build_scope('district_slug') }}
),

decided as (
    select
        c.*,
        r.reason as review_reason,
        r.created_by as reviewed_by,
        r.created_at as reviewed_at,
        case
            when r.decision = 'reject' then 'rejected'
            when r.decision = 'confirm' then 'confirmed'
            when c.candidates_for_old > 1 or c.candidates_for_new > 1 then 'ambiguous'
            when c.data_type <> 'users' and c.data_type = any(s.linked_types) then 'linked_automatically'
            else 'suggested'
        end as proposed_status
    from candidates as c
    left join settings as s on s.district_slug = c.district_slug
    left join reviews as r
      on r.district_slug = c.district_slug and r.data_type = c.data_type
     and r.old_clever_id = c.old_clever_id and r.new_clever_id = c.new_clever_id
),

-- a record replaces at most one record and is replaced by at most one
checked as (
    select
        *,
        count(*) filter (where proposed_status in {{ linking }})
            over (partition by district_slug, data_type, old_clever_id) as links_of_old,
        count(*) filter (where proposed_status in {{ linking }})
            over (partition by district_slug, data_type, new_clever_id) as links_of_new
    from decided
),

pairs as (
    select
        district_slug,
        data_type,
        old_clever_id,
        new_clever_id,
        matched_on,
        sync_run_id,
        detected_at,
        candidates_for_old,
        candidates_for_new,
        case when proposed_status in {{ linking }} and (links_of_old > 1 or links_of_new > 1) then 'conflict'
             else proposed_status end as status,
        reviewed_by,
        reviewed_at,
        case
            when proposed_status in {{ linking }} and links_of_old > 1
                then 'the old record is in another link too; reject the wrong one'
            when proposed_status in {{ linking }} and links_of_new > 1
                then 'the new record is in another link too; reject the wrong one'
            when proposed_status in ('confirmed', 'rejected')
                then proposed_status || ' by a reviewer: ' || review_reason
            when proposed_status = 'ambiguous' then
                concat_ws('; ',
                          case when candidates_for_old > 1
                               then 'the old record matches ' || candidates_for_old || ' new records' end,
                          case when candidates_for_new > 1
                               then 'the new record matches ' || candidates_for_new || ' old records' end)
                || '; never linked automatically, confirm the right pair'
            when proposed_status = 'linked_automatically' then 'linked by the setting reissued_ids.link_automatically'
            when data_type = 'users' then 'users are linked only when a reviewer confirms the pair'
            else 'waiting for a reviewer (or the setting reissued_ids.link_automatically)'
        end as reason
    from checked
),

listed as (
    select *
    from pairs
    union all
    select
        r.district_slug,
        r.data_type,
        r.old_clever_id,
        r.new_clever_id,
        null::text[],
        null::bigint,
        null::timestamptz,
        null::bigint,
        null::bigint,
        'review_ignored',
        r.created_by,
        r.created_at,
        'no such pair was found in this district (an archived record and a new one of the same sync '
        || 'with the same identifying data)'
    from reviews as r
    where not exists (
        select 1 from candidates as c
        where c.district_slug = r.district_slug and c.data_type = r.data_type
          and c.old_clever_id = r.old_clever_id and c.new_clever_id = r.new_clever_id)
)

select
    x.district_slug,
    x.data_type,
    x.old_clever_id,
    x.new_clever_id,
    {% for side in ['old', 'new'] %}
    case x.data_type
        {% for data_type, _, _ in reissue_data_types() %}
        when '{{ data_type }}' then {{ reissue_label(data_type, side ~ '_' ~ data_type) }}
        {% endfor %}
    end as {{ side }}_label,
    {% endfor %}
    x.matched_on,
    x.sync_run_id,
    x.detected_at,
    x.candidates_for_old,
    x.candidates_for_new,
    x.status,
    x.status in {{ linking }} as is_linked,
    x.reviewed_by,
    x.reviewed_at,
    x.reason
from listed as x
{% for data_type, _, state in reissue_data_types() %}
{% for side in ['old', 'new'] %}
left join {{ ref(state) }} as {{ side }}_{{ data_type }}
  on x.data_type = '{{ data_type }}' and {{ side }}_{{ data_type }}.district_slug = x.district_slug
 and {{ side }}_{{ data_type }}.clever_id = x.{{ side }}_clever_id
{% endfor %}
{% endfor %}
