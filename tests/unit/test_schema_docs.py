"""The marts' docs: each column described once (dbt doc blocks), the marts carry their
staging columns, the lifecycle columns, then their lineage columns, and docs/SCHEMA.md's
column tables are what clever_devkit.schema_docs makes of dbt's manifest (not stale)."""

from __future__ import annotations

import pytest
import yaml

from clever.catalog import DATA_TYPES
from clever_devkit import schema_docs
from tests.helpers import DBT_PROJECT, documented_models

LIFECYCLE = ["is_archived", "archived_at", "first_seen_at", "last_seen_at", "version_valid_from",
             "version_sync_run_id"]
# The lineage of reissued records (joined when read, not stored in the state tables).
LINEAGE = {"dim_users": ["lineage_id"], "dim_terms": ["lineage_id"], "dim_courses": ["lineage_id"],
           "dim_sections": ["term_lineage_id", "course_lineage_id"], "fct_enrollments": ["user_lineage_id"]}
STAGING_ONLY = {"sync_run_id", "synced_at", "record_hash", "raw"}
MARTS = {data_type.mart: data_type.staging_model for data_type in DATA_TYPES if data_type.mart}


def words(text: str) -> str:
    return " ".join(str(text).split())


def yml_columns(layer: str, model: str) -> list[tuple[str, str, str]]:
    return [(c["name"], c["data_type"], words(c.get("description", "")))
            for c in documented_models(layer)[model]["columns"]]


def raw_descriptions(model: str) -> dict[str, str]:
    """Column -> the description as written in the model's _*.yml (a doc() reference)."""
    for path in (DBT_PROJECT / "models").rglob("_*.yml"):
        for node in yaml.safe_load(path.read_text()).get("models") or []:
            if node["name"] == model:
                return {c["name"]: c.get("description", "") for c in node.get("columns") or []}
    raise KeyError(model)


@pytest.mark.parametrize("mart", MARTS)
def test_mart_docs_have_the_staging_columns_then_the_lifecycle_columns(mart):
    staging = [c for c in yml_columns("staging", MARTS[mart]) if c[0] not in STAGING_ONLY]
    marts = yml_columns("marts", mart)
    assert [c[0] for c in marts] == [c[0] for c in staging] + LIFECYCLE + LINEAGE.get(mart, [])
    assert marts[: len(staging)] == staging  # same types and words
    # ... written once: the mart's column and the staging column reference one doc block
    written, staged = raw_descriptions(mart), raw_descriptions(MARTS[mart])
    assert {name: written[name] for name, *_ in staging} == {name: staged[name] for name, *_ in staging}
    assert all(text.startswith("{{ doc(") for text in written.values()), written


@pytest.mark.parametrize("mart", MARTS)
def test_state_tables_are_documented_as_their_marts_without_last_seen_at(mart):
    state = "int_state__" + MARTS[mart].removeprefix("stg_clever__").replace("section_enrollments", "enrollments")
    documented = yml_columns("intermediate", state)
    expected = [(name, kind) for name, kind, _ in yml_columns("marts", mart)
                if name != "last_seen_at" and name not in LINEAGE.get(mart, [])]
    assert [(name, kind) for name, kind, _ in documented] == [
        *expected, ("archived_last_seen_at", "timestamptz"), ("snapshot_updated_at", "timestamp without time zone")]


def test_every_model_column_is_described_by_a_doc_block():
    for path in (DBT_PROJECT / "models").rglob("_*.yml"):
        for node in yaml.safe_load(path.read_text()).get("models") or []:
            for column in node.get("columns") or []:
                assert str(column.get("description", "")).startswith("{{ doc("), (path.name, node["name"], column)


def test_schema_md_is_what_the_generator_makes_of_the_dbt_project():
    text = schema_docs.SCHEMA_MD.read_text(encoding="utf-8")
    assert text == schema_docs.render(text, schema_docs.project_manifest()), (
        "docs/SCHEMA.md is stale: run `make schema-docs`")


def test_schema_md_has_a_generated_table_of_every_mart_and_the_lifecycle_columns():
    text = schema_docs.SCHEMA_MD.read_text(encoding="utf-8")
    generated = schema_docs.generated_models(text)
    assert "<!-- generated: lifecycle -->" in text
    assert set(MARTS) <= set(generated)
    marts_schema = {name for name, node in schema_docs.models(schema_docs.project_manifest()).items()
                    if node["schema"] == "clever_marts"}
    assert set(generated) == marts_schema
    for mart in MARTS:  # the lifecycle columns: one row, pointing to their table; the lineage after it
        section = text.split(f"<!-- generated: columns {mart} -->\n", 1)[1].split("<!-- end generated -->")[0]
        assert "| *lifecycle columns* |" in section, mart
        after = section.split("| *lifecycle columns* |", 1)[1].splitlines()[1:]
        assert [row.split("`")[1] for row in after if row] == LINEAGE.get(mart, []), mart


def test_a_stale_table_is_noticed():
    text = schema_docs.SCHEMA_MD.read_text(encoding="utf-8")
    stale = text.replace("| `nces_id` | text | NCES district ID", "| `nces_id` | text | NCES ID", 1)
    assert stale != text
    assert schema_docs.render(stale, schema_docs.project_manifest()) == text
