{{ config(materialized='view') }}
{# Records with no link and nothing to decide (those are in rpt_match_ambiguous), from
   both sides:
   - side 'clever': Clever records no app record matches. For a new district most are
     simply new to the application; an unmatched record of a known person is linked
     with an app.match_overrides row;
   - side 'app': the application's records that no Clever record is linked to (legacy
     accounts of people the district does not share, schools that closed, ...).
   A view of two parts (macros/match_reports.sql): the rows of the configured districts,
   stored per district (clever_intermediate.int_reports__match_unmatched), and app
   records that table does not hold, computed when read, with a NULL district_slug. #}
select entity, side, district_slug, clever_id, app_id, label, is_clever_archived, reason
from {{ ref('int_reports__match_unmatched') }}
union all
select * from (
{{ match_unmatched_rows(remainder=true) }}
) as remainder
