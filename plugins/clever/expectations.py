"""The Great Expectations suites' column grammar and loading, for the validator
(clever.validation). The suites themselves are generated from Clever's OpenAPI specs by
the dev kit (``make expectations``, clever_devkit.suites) and committed under
``expectations/<version>/<endpoint>.json``; an integration whose records Clever cuts down
(District SSO's users; Clever Library's users and sections) has its own under ``expectations/<version>/<integration>/``.

Suites run on a flattened copy of one extraction, one column per rule input. Column
names are a small grammar over the record's JSON path (path parts joined by ``__``):

    clever_id                       the record's Clever ID (landing column)
    <path>__json_type               jsonb_typeof of the value, or 'missing'
    <path>__text                    the value as text
    <path>__all_strings             an array whose items are all strings (NULL if not an array)
    <path>__resolves_to_<endpoint>  a string ID found in that endpoint's extraction
    <path>__all_resolve_to_<endpoint>  every ID of an array found there
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clever.catalog import ENDPOINTS
from clever.integrations import DEFAULT_INTEGRATION, integration
from clever.paths import EXPECTATIONS_DIR

_COLUMN = re.compile(
    r"(?P<path>[a-z0-9_]+?)__(?P<kind>json_type|text|all_strings|resolves_to|all_resolve_to)"
    r"(?:_(?P<ref>[a-z]+))?")


class SuiteError(RuntimeError):
    """A suite file is missing, stale or uses something the validator cannot run."""


# -- column grammar -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: str  # clever_id | json_type | text | all_strings | resolves_to | all_resolve_to
    path: tuple[str, ...] = ()
    references: str | None = None


def column_name(path: tuple[str, ...], kind: str, references: str | None = None) -> str:
    return "__".join(path) + f"__{kind}" + (f"_{references}" if references else "")


def parse_column(name: str) -> ColumnSpec:
    if name == "clever_id":
        return ColumnSpec(name, "clever_id")
    match = _COLUMN.fullmatch(name)
    if not match:
        raise SuiteError(f"expectation column {name!r} is not in the validation column grammar")
    kind, ref = match["kind"], match["ref"]
    if (kind in ("resolves_to", "all_resolve_to")) != (ref is not None) or (ref and ref not in ENDPOINTS):
        raise SuiteError(f"expectation column {name!r}: bad reference")
    return ColumnSpec(name, kind, tuple(match["path"].split("__")), ref)


def suite_variant(endpoint: str, integration_name: str = DEFAULT_INTEGRATION) -> str | None:
    """The integration whose own suite validates ``endpoint``'s records (Clever cuts them
    down for it), or None for the full (Secure Sync) suite."""
    return integration_name if endpoint in integration(integration_name).limited_records else None


def suite_name(api_version: str, endpoint: str, variant: str | None = None) -> str:
    return f"clever_{api_version.replace('.', '_')}_{endpoint}" + (f"_{variant}" if variant else "")


def suite_path(api_version: str, endpoint: str, root: Path = EXPECTATIONS_DIR, variant: str | None = None) -> Path:
    return root / api_version / (variant or "") / f"{endpoint}.json"


def load_suite_document(api_version: str, endpoint: str, root: Path = EXPECTATIONS_DIR,
                        integration_name: str = DEFAULT_INTEGRATION) -> dict[str, Any]:
    """The suite that validates ``endpoint`` for a district of ``integration_name``."""
    path = suite_path(api_version, endpoint, root, suite_variant(endpoint, integration_name))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"no expectation suite at {path}; run `make expectations`") from None
