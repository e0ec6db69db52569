"""docs/SCHEMA.md's column tables, generated from dbt's manifest.

Each column's description is written once, in a dbt doc block
(dbt_project/models/docs/*.md); the models' _*.yml reference it. SCHEMA.md keeps its
hand-written prose, and between marker comments

    <!-- generated: columns MODEL -->
    ...
    <!-- end generated -->

(or ``generated: lifecycle`` for the lifecycle columns every roster mart shares) holds
a table made from the model's documented columns, names, types and descriptions, in
their documented order. A roster mart's lifecycle columns are one row pointing to the
lifecycle table.

    PYTHONPATH=devkit:plugins python -m clever_devkit.schema_docs          # rewrite SCHEMA.md
    PYTHONPATH=devkit:plugins python -m clever_devkit.schema_docs --check  # exit 1 if stale

The manifest comes from a fresh ``dbt parse`` of the project (in a temporary target
directory, so it is never stale and no build's target is touched), or from --manifest.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import tempfile
from pathlib import Path

from clever.paths import DBT_PROJECT_DIR, REPO_ROOT

SCHEMA_MD = REPO_ROOT / "docs" / "SCHEMA.md"
LIFECYCLE = ("is_archived", "archived_at", "first_seen_at", "last_seen_at", "version_valid_from",
             "version_sync_run_id")
# The mart whose lifecycle columns the lifecycle table shows (every roster mart has the same).
LIFECYCLE_MODEL = "dim_districts"
_MARKER = re.compile(r"(<!-- generated: (columns (\w+)|lifecycle) -->\n)(.*?)(<!-- end generated -->)", re.DOTALL)


class DocsError(RuntimeError):
    """SCHEMA.md names a model the manifest does not have, or dbt could not parse."""


@functools.cache
def project_manifest() -> dict:
    """dbt's manifest of the project as it is now (a fresh ``dbt parse``)."""
    from dbt.cli.main import dbtRunner

    with tempfile.TemporaryDirectory(prefix="clever-dbt-parse-") as work:
        result = dbtRunner().invoke([
            "parse", "--quiet",
            "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target-path", work, "--log-path", work,
        ])
        if not result.success:
            raise DocsError(f"dbt parse failed: {result.exception}")
        return json.loads((Path(work) / "manifest.json").read_text(encoding="utf-8"))


def models(manifest: dict) -> dict[str, dict]:
    """The manifest's models by name."""
    return {node["name"]: node for node in manifest["nodes"].values() if node["resource_type"] == "model"}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _rows(columns: list[dict]) -> list[str]:
    return [f"| `{c['name']}` | {c.get('data_type') or ''} | {_cell(c.get('description', ''))} |" for c in columns]


def columns_table(node: dict) -> str:
    """A model's columns as a Markdown table; a roster mart's lifecycle columns as one row
    (the lineage columns some of them have after it stay rows of their own)."""
    columns = list(node["columns"].values())
    names = [c["name"] for c in columns]
    start = next((i for i in range(len(names)) if names[i:i + len(LIFECYCLE)] == list(LIFECYCLE)), None)
    if start is None:
        return "\n".join(["| column | type | meaning |", "| --- | --- | --- |", *_rows(columns)]) + "\n"
    lines = ["| column | type | meaning |", "| --- | --- | --- |", *_rows(columns[:start]),
             "| *lifecycle columns* | | " + ", ".join(f"`{name}`" for name in LIFECYCLE)
             + " (see [Lifecycle columns](#lifecycle-columns-every-mart)). |",
             *_rows(columns[start + len(LIFECYCLE):])]
    return "\n".join(lines) + "\n"


def lifecycle_table(node: dict) -> str:
    columns = [node["columns"][name] for name in LIFECYCLE]
    return "\n".join(["| column | type | meaning |", "| --- | --- | --- |", *_rows(columns)]) + "\n"


def render(text: str, manifest: dict) -> str:
    """SCHEMA.md's text with every generated table made anew from the manifest."""
    by_name = models(manifest)

    def table(match: re.Match) -> str:
        model = match.group(3) or LIFECYCLE_MODEL
        if model not in by_name:
            raise DocsError(f"docs/SCHEMA.md has a table of {model}, which is not a dbt model")
        body = columns_table(by_name[model]) if match.group(3) else lifecycle_table(by_name[model])
        return match.group(1) + body + match.group(5)

    return _MARKER.sub(table, text)


def generated_models(text: str) -> list[str]:
    """The models SCHEMA.md has a generated column table of."""
    return [match.group(3) for match in _MARKER.finditer(text) if match.group(3)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="schema-docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/SCHEMA.md is stale; write nothing")
    parser.add_argument("--manifest", type=Path, help="a manifest.json to read instead of parsing the project")
    args = parser.parse_args(argv)
    manifest = json.loads(args.manifest.read_text(encoding="utf-8")) if args.manifest else project_manifest()
    current = SCHEMA_MD.read_text(encoding="utf-8")
    wanted = render(current, manifest)
    if args.check:
        if wanted != current:
            print("docs/SCHEMA.md is stale: run `make schema-docs`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        SCHEMA_MD.write_text(wanted, encoding="utf-8")
        print(f"rewrote {SCHEMA_MD.relative_to(REPO_ROOT)} ({len(generated_models(wanted))} model tables)")
    else:
        print(f"{SCHEMA_MD.relative_to(REPO_ROOT)} is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
