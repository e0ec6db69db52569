{# Relations the project built under names it no longer uses (a rename or a move). A
   warehouse deployed before the rename still holds them: the deploy build drops them
   (on-run-start, deploy_only), so BI users cannot read stale copies next to the new
   tables. Nothing is lost: the new tables are rebuilt from the snapshots by the same
   deploy. CASCADE as dbt itself drops a relation it replaces: views depending on the old
   names (the project's own ones are recreated by the same build) go with them
   (docs/OPERATIONS.md, "Upgrading"). #}

{% macro renamed_relations() %}
{{ return([
    {'schema': 'clever_marts', 'name': 'district_matches', 'now': 'dim_district_matches'},
    {'schema': 'clever_marts', 'name': 'school_matches', 'now': 'dim_school_matches'},
    {'schema': 'clever_marts', 'name': 'user_matches', 'now': 'dim_user_matches'},
]) }}
{% endmacro %}

{% macro drop_renamed_relations() %}
{% for old in renamed_relations() %}
drop table if exists {{ adapter.quote(old.schema) }}.{{ adapter.quote(old.name) }} cascade;
{% endfor %}
{% endmacro %}
