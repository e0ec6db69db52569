{# Clever's non-guaranteed fields may be missing, null, empty or malformed. A bad value
   must become NULL in its typed column (the raw JSON keeps the original), never fail
   the whole build. The functions catch the cast's error in an EXCEPTION block, a
   subtransaction, which PostgreSQL forbids during a parallel query: they are parallel
   unsafe, or a large district's build fails whenever the planner goes parallel. #}
{% macro create_cast_functions() %}
create schema if not exists clever_staging;
create or replace function clever_staging.try_timestamptz(value text) returns timestamptz
language plpgsql stable parallel unsafe as $$
begin
    if value is null or btrim(value) = '' then return null; end if;
    return value::timestamptz;
exception when others then
    return null;
end $$;
create or replace function clever_staging.try_date(value text, fmt text) returns date
language plpgsql stable parallel unsafe as $$
begin
    if value is null or btrim(value) = '' then return null; end if;
    return to_date(value, fmt);
exception when others then
    return null;
end $$;
{% endmacro %}

{% macro ts(path) -%}
    clever_staging.try_timestamptz({{ path }})
{%- endmacro %}

{# A JSON array of strings as text[]; missing or null gives an empty array. #}
{% macro text_array(json_expr) -%}
    coalesce(array(select jsonb_array_elements_text(
        case when jsonb_typeof({{ json_expr }}) = 'array' then {{ json_expr }} else '[]'::jsonb end)), '{}')
{%- endmacro %}

{# Empty strings in optional fields mean "not provided". #}
{% macro txt(path) -%}
    nullif({{ path }}, '')
{%- endmacro %}

{# A nested JSON object or array (enrollments, ext, ...) as jsonb; JSON null is NULL. #}
{% macro json_or_null(json_expr) -%}
    nullif({{ json_expr }}, 'null'::jsonb)
{%- endmacro %}

{# A decimal number sent as a string (lat/lon); anything else is NULL. One regex, no
   exception handler: cheap enough for every user row. #}
{% macro num(path) -%}
    substring({{ path }} from '^\s*([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))\s*$')::numeric
{%- endmacro %}

{# A JSON boolean read as text (`#>>`); anything else is NULL. #}
{% macro bool_or_null(path) -%}
    case {{ path }} when 'true' then true when 'false' then false end
{%- endmacro %}

{# The calendar date a value starts with (YYYY-MM-DD, as in '2025-08-13' or
   '2025-08-13T00:00:00.000Z'), read as written: it never depends on the session's
   time zone. Not a valid date: NULL. #}
{% macro date_prefix(path) -%}
    clever_staging.try_date(substring({{ path }} from '^\s*([0-9]{4}-[0-9]{2}-[0-9]{2})'), 'YYYY-MM-DD')
{%- endmacro %}
