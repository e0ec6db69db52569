"""The Great Expectations suites: generated from Clever's OpenAPI specs, committed, and
runnable by the validator (every column in its grammar, every critical rule quarantinable)."""

from __future__ import annotations

import json

import pytest
import yaml
from psycopg import sql

from clever.catalog import API_VERSIONS
from clever.expectations import load_suite_document, parse_column, suite_path
from clever.validation import expectation_key, suite_columns, unexpected_rows_predicate
from clever_devkit.suites import CONDITIONAL_FIELDS, SPEC_DIR, build_suite, render
from clever_devkit.suites import SUITES as GENERATED

# (version, endpoint, integration whose own suite it is, or None)
SUITES = [(v, e, variant) for v in API_VERSIONS for e, variant in GENERATED]


def test_the_committed_suites_are_exactly_the_generated_ones():
    committed = {p.relative_to(SPEC_DIR.parent) for p in SPEC_DIR.parent.rglob("*.json")}
    assert committed == {suite_path(v, e, SPEC_DIR.parent, variant).relative_to(SPEC_DIR.parent)
                         for v, e, variant in SUITES}
    assert {("users", "sso"), ("users", "library"), ("sections", "library")} <= set(GENERATED)


@pytest.mark.parametrize(("api_version", "endpoint", "variant"), SUITES)
def test_committed_suite_is_what_the_generator_makes_from_the_spec(api_version, endpoint, variant):
    committed = suite_path(api_version, endpoint, SPEC_DIR.parent, variant).read_text(encoding="utf-8")
    assert committed == render(build_suite(api_version, endpoint, variant=variant)), \
        "run `make expectations` and commit"


@pytest.mark.parametrize(("api_version", "endpoint", "variant"), SUITES)
def test_every_suite_runs_in_the_validator(api_version, endpoint, variant):
    suite = load_suite_document(api_version, endpoint, integration_name=variant or "secure_sync")
    keys = [expectation_key(e) for e in suite["expectations"]]
    assert len(keys) == len(set(keys)), "results are matched to expectations by (type, column)"
    assert {c.name for c in suite_columns(suite)} >= {"clever_id"}
    table = sql.Identifier("clever_validation", "t")
    for expectation in suite["expectations"]:
        assert expectation["severity"] in {"critical", "warning"}
        assert expectation["description"]
        if expectation["severity"] == "critical":
            unexpected_rows_predicate(expectation, table)  # raises if it could not be quarantined


def rules(api_version, endpoint):
    suite = load_suite_document(api_version, endpoint)
    return {(e["kwargs"]["column"], e["severity"]): e for e in suite["expectations"]}


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_guaranteed_fields_are_critical_and_nullable_ones_are_not(api_version):
    users, sections = rules(api_version, "users"), rules(api_version, "sections")
    for column in ("district__json_type", "name__json_type", "roles__json_type", "district__resolves_to_districts"):
        assert (column, "critical") in users, column
    suite = load_suite_document(api_version, "users")
    assert {e["type"] for e in suite["expectations"] if e["kwargs"]["column"] == "clever_id"} == {
        "expect_column_values_to_not_be_null", "expect_column_values_to_be_unique"}
    for column in ("school__json_type", "students__json_type", "teachers__json_type",
                   "students__all_strings", "school__resolves_to_schools"):
        assert (column, "critical") in sections, column
    # x-nullable: may be missing or null, and only reported when it has the wrong type
    for column in ("email__json_type", "name__first__json_type"):
        assert users[(column, "warning")]["kwargs"]["value_set"] == ["missing", "null", "string"]
    for column in ("term_id__json_type", "course__json_type", "teacher__json_type"):
        assert (column, "warning") in sections
    spec = yaml.safe_load((SPEC_DIR / f"{api_version}.yml").read_text(encoding="utf-8"))["definitions"]
    nullable_student = {k for k, v in spec["Student"]["properties"].items() if v.get("x-nullable")}
    critical_student = {parse_column(c).path[2] for c, s in users if s == "critical"
                        and c.startswith("roles__student__") and c.count("__") == 3}
    assert nullable_student and not nullable_student & critical_student
    assert not set(CONDITIONAL_FIELDS) & critical_student


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_role_fields_apply_only_to_users_with_the_role(api_version):
    users = rules(api_version, "users")
    school = users[("roles__student__school__json_type", "critical")]
    assert school["kwargs"]["row_condition"] == {
        "type": "comparison", "column": {"name": "roles__student__json_type"}, "operator": "==",
        "parameter": "object"}
    assert users[("roles__teacher__school__resolves_to_schools", "critical")]["kwargs"]["row_condition"][
        "column"]["name"] == "roles__teacher__json_type"
    assert users[("roles__student__json_type", "warning")]["kwargs"]["value_set"] == ["missing", "null", "object"]


def test_suites_are_plain_gx_documents():
    import great_expectations as gx

    document = json.loads(render(build_suite("v3.1", "sections")))
    suite = gx.ExpectationSuite(name=document["name"], expectations=document["expectations"])
    assert len(suite.expectations) == len(document["expectations"])


def test_unknown_columns_are_refused():
    from clever.expectations import SuiteError

    for bad in ("school__resolves_to", "school__resolves_to_nowhere", "school", "School__text"):
        with pytest.raises(SuiteError):
            parse_column(bad)
    assert parse_column("roles__district_admin__title__json_type").path == ("roles", "district_admin", "title")


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_library_suites_require_only_what_clever_sends_a_library_app(api_version):
    """Clever Library: teacher name and email, student first name and last initial, sections;
    no schools, SIS ids, terms or courses, so nothing of them is critical."""
    users = {(e["kwargs"]["column"], e["severity"]) for e in
             load_suite_document(api_version, "users", integration_name="library")["expectations"]}
    sections = {(e["kwargs"]["column"], e["severity"]) for e in
                load_suite_document(api_version, "sections", integration_name="library")["expectations"]}
    critical_users = {column for column, severity in users if severity == "critical"}
    assert critical_users == {"clever_id", "id__json_type", "district__json_type", "district__resolves_to_districts",
                              "name__json_type", "roles__json_type"}
    assert ("roles__student__school__json_type", "warning") in users
    assert not any("resolves_to_schools" in column for column, _ in users | sections)
    assert ("name__last__text", "warning") in users  # a last name longer than an initial is reported
    critical_sections = {column for column, severity in sections if severity == "critical"}
    assert {"students__json_type", "teachers__json_type", "name__json_type"} <= critical_sections
    assert not critical_sections & {"school__json_type", "sis_id__json_type", "school__resolves_to_schools"}
    # a Secure Sync district still gets the full suites
    assert load_suite_document(api_version, "users") != load_suite_document(api_version, "users",
                                                                            integration_name="library")
    assert load_suite_document(api_version, "districts", integration_name="library") == \
        load_suite_document(api_version, "districts")


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_a_district_sso_users_suite_requires_only_what_an_sso_app_receives(api_version):
    """id, district, name and roles are critical; email, the SIS and state IDs, a role's
    school and demographics may be missing; no reference to schools is checked."""
    suite = load_suite_document(api_version, "users", integration_name="sso")
    assert suite["name"] == f"clever_{api_version.replace('.', '_')}_users_sso"
    critical = {e["kwargs"]["column"] for e in suite["expectations"] if e["severity"] == "critical"}
    assert critical == {"clever_id", "id__json_type", "district__json_type", "district__resolves_to_districts",
                        "name__json_type", "roles__json_type"}
    columns = {e["kwargs"]["column"] for e in suite["expectations"]}
    assert not {c for c in columns if "resolves_to_schools" in c}
    sso = {(e["kwargs"]["column"], e["severity"]): e for e in suite["expectations"]}
    for column in ("email__json_type", "created__json_type", "roles__student__school__json_type",
                   "roles__student__sis_id__json_type", "roles__teacher__sis_id__json_type"):
        assert "missing" in sso[(column, "warning")]["kwargs"]["value_set"], column
    # The same fields stay required of a Secure Sync district's users.
    secure_sync = rules(api_version, "users")
    assert ("roles__student__school__resolves_to_schools", "critical") in secure_sync
    assert ("created__json_type", "critical") in secure_sync
    # The other endpoints an sso district reads keep the Secure Sync suite.
    assert load_suite_document(api_version, "districts", integration_name="sso") == \
        load_suite_document(api_version, "districts")
