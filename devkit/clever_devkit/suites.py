"""Great Expectations suites for Clever records, generated from Clever's OpenAPI specs.

``make expectations`` (``python -m clever_devkit.suites``) writes one GX 1.x suite per API
version and endpoint to ``expectations/<version>/<endpoint>.json`` from the specs kept in
``expectations/openapi/``; the suites are committed and a test keeps them in step with
the generator.

How the spec becomes rules:

- A field the spec does not flag ``x-nullable`` is guaranteed: it must be present, not
  null and of its JSON type (severity ``critical``). A role's fields are guaranteed only
  for users who have the role, and a nested object's fields only where the object is
  there (GX ``row_condition``).
- A field flagged ``x-nullable`` may be missing or null; a wrong type, a value outside
  its enum or a broken pattern is reported (severity ``warning``) but never blocks.
- A few fields the spec leaves unflagged are sent by Clever only in some districts or
  situations; they are treated as optional (``CONDITIONAL_FIELDS`` says why for each).
- Clever IDs are present and unique within one extraction, and the references Clever
  guarantees (every record's district, a section's school, a student's and a teacher's
  school) resolve within the same extraction (critical). Other references (a section's
  term, course and members) are reported as warnings.
- An integration whose records Clever cuts down (``limited_records`` in
  clever.integrations: a District SSO app's users, a Clever Library app's users and sections) gets its own suite,
  ``expectations/<version>/<integration>/<endpoint>.json``: only the fields Clever
  guarantees to that integration (``SCOPE_GUARANTEES``) are critical, every other field
  of the definition is optional (its type still reported), and only references to
  endpoints the integration reads are checked. A Library student's last name is reported
  when it is more than an initial.

A critical failure quarantines the record (clever.validation); warnings only report.

The column grammar the rules are written in is clever.expectations'.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clever.catalog import API_VERSIONS, DATA_TYPES, ENDPOINTS
from clever.expectations import column_name, suite_name, suite_path
from clever.integrations import INTEGRATIONS, integration
from clever.paths import EXPECTATIONS_DIR

SPEC_DIR = EXPECTATIONS_DIR / "openapi"

DEFINITION_OF = {t.endpoint: t.definition for t in DATA_TYPES if t.definition}

# Unflagged in the spec, but present only in some districts or situations.
CONDITIONAL_FIELDS = {
    "ext": "district-defined extension data; absent unless the district adds some",
    "error": "set only while a district's sync is in error",
    "legacy_id": "only for records migrated from Clever API v1/v2",
    "credentials": "only when the district shares usernames",
    "district_contact": "only when the district named a contact",
    "principal": "only when the SIS names a principal",
    "disability": "v3.1 special-education data, shared only with apps granted it",
    "preferred_name": "v3.1: only when the SIS has a preferred name",
}
# Fields of the role definitions that v3 sends on the user record, not inside the role.
ROLE_FIELDS_ON_USER = {"created", "last_modified", "district", "name"}
# Staff sub-roles, sent only by districts whose SIS has them.
CONDITIONAL_ROLE_FIELDS = {("staff", "roles")}

# (endpoint, path) -> (referenced endpoint, severity). Every record's `district` is added.
REFERENCES: dict[tuple[str, tuple[str, ...]], tuple[str, str]] = {
    ("sections", ("school",)): ("schools", "critical"),
    ("users", ("roles", "student", "school")): ("schools", "critical"),
    ("users", ("roles", "teacher", "school")): ("schools", "critical"),
    ("sections", ("term_id",)): ("terms", "warning"),
    ("sections", ("course",)): ("courses", "warning"),
    ("sections", ("teacher",)): ("users", "warning"),
    ("sections", ("teachers",)): ("users", "warning"),
    ("sections", ("students",)): ("users", "warning"),
    ("users", ("roles", "student", "schools")): ("schools", "warning"),
    ("users", ("roles", "teacher", "schools")): ("schools", "warning"),
}

# Per integration and endpoint, the fields Clever guarantees to that integration (top-level
# paths); the rest of the definition is not sent to it, or not always. District SSO: "user
# first name, last name, email" with the user's Clever ID, district and roles (Clever's
# certification types and District SSO guide); the email stays optional, as in the spec.
# Clever Library: "teacher name, teacher email, student first name and last initial,
# section (class) information", with each record's Clever ID and district and a user's
# roles. Schools, SIS and state IDs, demographics, terms and courses need Secure Sync.
SCOPE_GUARANTEES: dict[str, dict[str, frozenset[tuple[str, ...]]]] = {
    "sso": {"users": frozenset({("id",), ("district",), ("name",), ("roles",)})},
    "library": {"users": frozenset({("id",), ("district",), ("name",), ("roles",)}),
                "sections": frozenset({("id",), ("district",), ("name",), ("students",), ("teachers",)})},
}
SCOPE_REASONS = {"sso": "not guaranteed to a District SSO app", "library": "not guaranteed to a Clever Library app"}


def _definition(definitions: dict[str, Any], schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema a property points at, and whether the property is nullable."""
    nullable = bool(schema.get("x-nullable"))
    if "$ref" in schema:
        target = definitions[schema["$ref"].rsplit("/", 1)[1]]
        return target, nullable or bool(target.get("x-nullable"))
    return schema, nullable


def _json_type(schema: dict[str, Any]) -> str:
    if "properties" in schema or schema.get("type") == "object":
        return "object"
    return {"integer": "number"}.get(schema.get("type", "string"), schema.get("type", "string"))


@dataclass(frozen=True)
class _Rule:
    type: str
    kwargs: dict[str, Any]
    severity: str
    description: str


def _condition(column: str) -> dict[str, Any]:
    return {"type": "comparison", "column": {"name": column}, "operator": "==", "parameter": "object"}


def _field_rules(endpoint: str, definitions: dict[str, Any], properties: dict[str, Any],
                 path: tuple[str, ...], condition: str | None, role: str | None,
                 variant: str | None = None) -> Iterator[_Rule]:
    where = {"row_condition": _condition(condition)} if condition else {}
    scope = SCOPE_GUARANTEES[variant][endpoint] if variant else None
    for name, raw_schema in sorted(properties.items()):
        schema, nullable = _definition(definitions, raw_schema)
        field_path = (*path, name)
        dotted = ".".join(field_path)
        conditional = (name in CONDITIONAL_FIELDS or (role is not None and name in ROLE_FIELDS_ON_USER)
                       or (role, name) in CONDITIONAL_ROLE_FIELDS)
        out_of_scope = scope is not None and field_path not in scope
        guaranteed = not nullable and not conditional and not out_of_scope
        json_type = _json_type(schema)
        type_column = column_name(field_path, "json_type")
        if guaranteed:
            yield _Rule("expect_column_values_to_be_in_set",
                        {"column": type_column, "value_set": [json_type], **where}, "critical",
                        f"guaranteed field {dotted} is present, not null and a JSON {json_type}")
        else:
            why = ("x-nullable" if nullable else SCOPE_REASONS[variant] if out_of_scope and not conditional
                   else CONDITIONAL_FIELDS.get(name, "sent only where it applies"))
            yield _Rule("expect_column_values_to_be_in_set",
                        {"column": type_column, "value_set": sorted({json_type, "null", "missing"}), **where},
                        "warning", f"optional field {dotted} ({why}) is a JSON {json_type} when present")
        if json_type == "string" and schema.get("enum"):
            yield _Rule("expect_column_values_to_be_in_set",
                        {"column": column_name(field_path, "text"), "value_set": list(schema["enum"]), **where},
                        "warning", f"{dotted} is one of Clever's documented values")
        if json_type == "string" and schema.get("pattern"):
            yield _Rule("expect_column_values_to_match_regex",
                        {"column": column_name(field_path, "text"), "regex": f"^{schema['pattern']}$", **where},
                        "warning", f"{dotted} matches {schema['pattern']}")
        if json_type == "array" and schema.get("items", {}).get("type") == "string":
            yield _Rule("expect_column_values_to_be_in_set",
                        {"column": column_name(field_path, "all_strings"), "value_set": [True], **where},
                        "critical" if guaranteed else "warning", f"every item of {dotted} is a string")
        reference = REFERENCES.get((endpoint, field_path))
        if name == "district" and len(path) == 0 and endpoint != "districts":
            reference = ("districts", "critical")
        if reference and variant and reference[0] not in integration(variant).readable:
            reference = None  # the integration never receives the records it refers to
        if reference:
            target, severity = reference
            kind = "all_resolve_to" if json_type == "array" else "resolves_to"
            yield _Rule("expect_column_values_to_be_in_set",
                        {"column": column_name(field_path, kind, target), "value_set": [True], **where},
                        severity, f"{dotted} refers to {target} in the same extraction")
        if json_type == "object" and "properties" in schema:
            child_role = name if path == ("roles",) else role
            # A role's (or a nested object's) fields apply only where it is there.
            child_condition = type_column if (path == ("roles",) or not guaranteed) else condition
            yield from _field_rules(endpoint, definitions, schema["properties"], field_path,
                                    child_condition, child_role, variant)


def build_suite(api_version: str, endpoint: str, spec_dir: Path = SPEC_DIR,
                variant: str | None = None) -> dict[str, Any]:
    """The GX suite (as its JSON document) for one endpoint of one API version; with
    ``variant``, for that integration's cut-down records."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    spec = yaml.safe_load((spec_dir / f"{api_version}.yml").read_text(encoding="utf-8"))
    definitions = spec["definitions"]
    definition = definitions[DEFINITION_OF[endpoint]]
    rules = [
        _Rule("expect_column_values_to_not_be_null", {"column": "clever_id"}, "critical",
              "every record has a Clever id"),
        _Rule("expect_column_values_to_be_unique", {"column": "clever_id"}, "critical",
              "no Clever id appears twice in one extraction"),
        # The landing column holds a numeric id's text too (so that record is kept, not
        # archived): the id's JSON type is checked here as well.
        *_field_rules(endpoint, definitions, definition["properties"], (), None, None, variant),
    ]
    if variant == "library" and endpoint == "users":
        rules.append(_Rule("expect_column_values_to_match_regex",
                           {"column": column_name(("name", "last"), "text"), "regex": r"^[^\s.]?\.?$",
                            "row_condition": _condition(column_name(("roles", "student"), "json_type"))},
                           "warning", "a student's last name is only an initial (what Clever sends a Library app)"))
    suite = gx.ExpectationSuite(
        name=suite_name(api_version, endpoint, variant),
        meta={"clever": {"api_version": api_version, "endpoint": endpoint,
                         "definition": DEFINITION_OF[endpoint],
                         **({"integration": variant} if variant else {}),
                         "generated_by": "python -m clever_devkit.suites (make expectations)",
                         "source": f"expectations/openapi/{api_version}.yml"}},
    )
    for rule in rules:
        config = ExpectationConfiguration(type=rule.type, kwargs=rule.kwargs, description=rule.description,
                                          severity=rule.severity)
        suite.add_expectation_configuration(config)
    document = suite.to_json_dict()
    document.pop("id", None)
    for expectation in document["expectations"]:
        expectation.pop("id", None)  # ids are assigned when a context loads the suite
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


SUITES: tuple[tuple[str, str | None], ...] = (
    *((endpoint, None) for endpoint in ENDPOINTS),
    *((endpoint, name) for name, kind in INTEGRATIONS.items() for endpoint in kind.limited_records),
)  # (endpoint, integration variant) for each API version


def write_suites(out: Path = EXPECTATIONS_DIR, spec_dir: Path = SPEC_DIR) -> list[Path]:
    written = []
    for api_version in API_VERSIONS:
        for endpoint, variant in SUITES:
            path = suite_path(api_version, endpoint, out, variant)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(build_suite(api_version, endpoint, spec_dir, variant)), encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clever-expectations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=EXPECTATIONS_DIR)
    parser.add_argument("--spec-dir", type=Path, default=SPEC_DIR)
    args = parser.parse_args(argv)
    for path in write_suites(args.out, args.spec_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
