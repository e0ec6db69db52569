{# Use the configured schema names as they are (clever_staging, clever_snapshots,
   clever_marts) instead of dbt's default "<target>_<custom>" prefixing: BI roles and
   docs refer to these names. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name | trim if custom_schema_name else target.schema }}
{%- endmacro %}
