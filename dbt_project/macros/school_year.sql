{# School years for reports. A date belongs to the school year that starts in month
   var('school_year_start_month') (default July) of its own year, or of the year before
   when it falls earlier in the calendar year: 2026-01-06 and 2025-08-13 are both 2025-26. #}
{% macro school_year_start(date_expr) -%}
    (extract(year from {{ date_expr }})::int
     - case when extract(month from {{ date_expr }}) < {{ var('school_year_start_month') }} then 1 else 0 end)
{%- endmacro %}

{# '2025-26' for the school year starting in 2025. #}
{% macro school_year_label(start_year_expr) -%}
    (({{ start_year_expr }})::text || '-' || lpad(((({{ start_year_expr }}) + 1) % 100)::text, 2, '0'))
{%- endmacro %}
