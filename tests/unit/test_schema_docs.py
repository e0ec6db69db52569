"""The three descriptions of the marts agree: dbt docs of staging and marts, and
docs/SCHEMA.md (same columns, same types, same words)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import documented_models

SCHEMA_MD = Path(__file__).resolve().parents[2] / "docs" / "SCHEMA.md"
LIFECYCLE = ["is_archived", "archived_at", "first_seen_at", "last_seen_at", "version_valid_from",
             "version_sync_run_id"]
STAGING_ONLY = {"sync_run_id", "synced_at", "record_hash", "raw"}
MARTS = {"dim_districts": "stg_clever__districts", "dim_schools": "stg_clever__schools",
         "dim_users": "stg_clever__users", "dim_sections": "stg_clever__sections",
         "dim_terms": "stg_clever__terms", "dim_courses": "stg_clever__courses",
         "fct_enrollments": "stg_clever__section_enrollments"}
# SCHEMA.md points to its Conventions section for these instead of repeating them.
SHORTENED_IN_SCHEMA_MD = {"district_slug", "clever_id"}


def words(text: str) -> str:
    return " ".join(str(text).split())


def yml_columns(layer: str, model: str) -> list[tuple[str, str, str]]:
    return [(c["name"], c["data_type"], words(c.get("description", "")))
            for c in documented_models(layer)[model]["columns"]]


def schema_md_columns(mart: str) -> list[tuple[str, str, str]]:
    section = SCHEMA_MD.read_text().split(f"\n### {mart}\n", 1)[1]
    section = re.split(r"\n##+ ", section, maxsplit=1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \| (.+) \|$", section, flags=re.MULTILINE)
    assert "| *lifecycle columns* |" in section, mart
    return [(name, kind.strip(), words(meaning)) for name, kind, meaning in rows]


@pytest.mark.parametrize("mart", MARTS)
def test_mart_docs_have_the_staging_columns_then_the_lifecycle_columns(mart):
    staging = [c for c in yml_columns("staging", MARTS[mart]) if c[0] not in STAGING_ONLY]
    marts = yml_columns("marts", mart)
    assert [c[0] for c in marts] == [c[0] for c in staging] + LIFECYCLE
    assert marts[: len(staging)] == staging  # same types and words


@pytest.mark.parametrize("mart", MARTS)
def test_schema_md_lists_the_mart_columns_with_their_types_and_meaning(mart):
    documented = {name: (kind, description) for name, kind, description in yml_columns("marts", mart)
                  if name not in LIFECYCLE}
    listed = schema_md_columns(mart)
    assert [name for name, *_ in listed] == list(documented)
    for name, kind, meaning in listed:
        assert kind == documented[name][0], name
        if name not in SHORTENED_IN_SCHEMA_MD:
            assert meaning == documented[name][1], name


@pytest.mark.parametrize("mart", MARTS)
def test_state_tables_are_documented_as_their_marts_without_last_seen_at(mart):
    state = "int_state__" + MARTS[mart].removeprefix("stg_clever__").replace("section_enrollments", "enrollments")
    documented = yml_columns("intermediate", state)
    expected = [(name, kind) for name, kind, _ in yml_columns("marts", mart) if name != "last_seen_at"]
    assert [(name, kind) for name, kind, _ in documented] == [
        *expected, ("archived_last_seen_at", "timestamptz"), ("snapshot_updated_at", "timestamp without time zone")]
