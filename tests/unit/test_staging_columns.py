"""Every field of Clever's OpenAPI definitions (v3.0 and v3.1) has a typed staging column,
and the staging docs list exactly the columns the SQL selects."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import documented_types, json_paths, staging_columns

SPECS = Path(__file__).resolve().parents[2] / "expectations" / "openapi"
DEFINITIONS = {"districts": "District", "schools": "School", "users": "User", "sections": "Section",
               "terms": "Term", "courses": "Course"}

# Fields with no column of their own, and why. Keep this list short.
EXCLUDED = {
    # The contact of a district-app token's one district: always that district (district_id).
    ("districts", "district_contact.district"),
    # A teacher role's district is the user's own `district` (district_id).
    ("users", "roles.teacher.district"),
}

# Landed as columns of every landing table (clever.extract), not read from `raw` by the model.
LANDING_COLUMNS = {"id": "clever_id", "district": "district_id"}

# Where the column type is not the one the spec's JSON type implies.
TYPE_OVERRIDES = {
    ("users", "roles.student.dob"): "date",          # M/D/YYYY string
    ("schools", "location.lat"): "numeric",           # decimal numbers sent as strings
    ("schools", "location.lon"): "numeric",
    ("users", "roles.student.location.lat"): "numeric",
    ("users", "roles.student.location.lon"): "numeric",
    ("terms", "start_date"): "date",                  # calendar dates, though typed datetime
    ("terms", "end_date"): "date",
}


def spec_fields(version: str, endpoint: str) -> dict[str, dict]:
    """Leaf fields of an endpoint's definition, by dotted path. Objects with properties
    are walked into; arrays and free-form objects (`ext`) are leaves."""
    definitions = yaml.safe_load((SPECS / f"{version}.yml").read_text())["definitions"]
    fields: dict[str, dict] = {}

    def walk(name: str, prefix: str) -> None:
        for field, schema in (definitions[name].get("properties") or {}).items():
            path = f"{prefix}{field}"
            ref = schema.get("$ref", "").rpartition("/")[2]
            if ref and definitions[ref].get("properties"):
                walk(ref, f"{path}.")
            else:
                fields[path] = schema

    walk(DEFINITIONS[endpoint], "")
    return fields


def expected_type(endpoint: str, path: str, schema: dict) -> str:
    if (endpoint, path) in TYPE_OVERRIDES:
        return TYPE_OVERRIDES[(endpoint, path)]
    if schema.get("type") == "array":
        return "text[]" if schema.get("items", {}).get("type") == "string" else "jsonb"
    if schema.get("type") == "object" or "$ref" in schema:
        return "jsonb"
    if schema.get("type") == "boolean":
        return "boolean"
    return {"datetime": "timestamptz", "date-time": "timestamptz", "date": "date"}.get(schema.get("format"), "text")


@pytest.mark.parametrize("endpoint", DEFINITIONS)
def test_staging_docs_list_exactly_the_columns_the_sql_selects(endpoint):
    assert list(documented_types("staging", f"stg_clever__{endpoint}")) == list(staging_columns(endpoint))


@pytest.mark.parametrize("version", ["v3.0", "v3.1"])
@pytest.mark.parametrize("endpoint", DEFINITIONS)
def test_every_spec_field_has_a_typed_staging_column(version, endpoint):
    columns = staging_columns(endpoint)
    types = documented_types("staging", f"stg_clever__{endpoint}")
    missing, mistyped = [], []
    for path, schema in spec_fields(version, endpoint).items():
        if (endpoint, path) in EXCLUDED:
            continue
        readers = [LANDING_COLUMNS[path]] if path in LANDING_COLUMNS else [
            name for name, paths in columns.items() if path in paths]
        want = expected_type(endpoint, path, schema)
        if not readers:
            missing.append(path)
        elif want not in {types[name] for name in readers}:
            mistyped.append(f"{path}: want {want}, columns {[(name, types[name]) for name in readers]}")
    assert not missing, f"spec fields of {version} {endpoint} with no staging column: {missing}"
    assert not mistyped, f"{version} {endpoint}: {mistyped}"


def test_exclusions_are_still_spec_fields():
    every = {(endpoint, path) for version in ("v3.0", "v3.1") for endpoint in DEFINITIONS
             for path in spec_fields(version, endpoint)}
    assert EXCLUDED <= every and set(TYPE_OVERRIDES) <= every


def test_the_path_parser_reads_both_styles():
    assert json_paths("nullif(raw #>> '{roles,student,sis_id}', '')") == {"roles.student.sis_id"}
    assert json_paths("nullif(raw #> '{roles,student}' ->> 'sis_id', '')") == {"roles.student.sis_id"}
    assert json_paths("raw -> 'location' ->> 'lat'") == {"location.lat"}
    assert json_paths("district_slug") == set()
