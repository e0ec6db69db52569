"""The rules that match the application's own records to Clever records, and their order.

This is the catalogue: every rule the dbt matching models implement, per entity, with
the confidence a link made by it carries, in the default order. A district may reorder
or drop rules in config/districts.yml (``matching:``); the district's sync writes its
order to ``clever_landing.match_settings`` for dbt (see clever.matching).

Kept free of heavy imports: the DAG file reads the config, and so this, at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# entity -> rule -> (confidence of a link made by the rule, what it compares). Dict order
# is the default rule order. The rule names are implemented in dbt_project/models/intermediate.
RULES: dict[str, dict[str, tuple[float, str]]] = {
    "districts": {
        "clever_id": (1.00, "app.districts.clever_id = the Clever district ID"),
        "nces_id": (0.99, "same NCES district ID"),
        "name_state": (0.80, "same normalised name and state (config `state`, else the state of its schools)"),
    },
    "schools": {
        "clever_id": (1.00, "app.schools.clever_id = the Clever school ID"),
        "nces_id": (0.99, "same NCES school ID"),
        "state_id": (0.97, "same state school ID"),
        "sis_id": (0.95, "same SIS school ID"),
        "school_number": (0.90, "same school number"),
        "name": (0.75, "same normalised name"),
    },
    "users": {
        "clever_id": (1.00, "app.users.clever_id = the Clever user ID"),
        "sis_id": (0.95, "same SIS ID for the same role (student, teacher, staff ID, contact)"),
        "state_id": (0.95, "same state ID for the same role (student, teacher)"),
        "email": (0.90, "same email, case-insensitive"),
        "name_school": (0.70, "same normalised first and last name at a school both records share"),
    },
}
ENTITIES = tuple(RULES)


@dataclass(frozen=True)
class MatchingConfig:
    """A district's matching settings: rule order per entity, and its state (2 letters)."""

    rules: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {entity: tuple(rules) for entity, rules in RULES.items()})
    state: str | None = None

    def as_settings(self) -> dict[str, list[dict[str, Any]]]:
        """The rule order with confidences, as written to clever_landing.match_settings.rules."""
        return {entity: [{"rule": rule, "confidence": RULES[entity][rule][0]} for rule in rules]
                for entity, rules in self.rules.items()}


def parse_matching(defaults: Any, override: Any, where: str,
                   default_order: dict[str, tuple[str, ...]] | None = None) -> MatchingConfig:
    """Merge the defaults' ``matching:`` with a district's (per entity) over
    ``default_order`` (per entity; else the catalogue's order); raise ValueError naming
    the problem."""
    merged: dict[str, Any] = {}
    for value, label in ((defaults, "defaults"), (override, "district")):
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ValueError(f"{where}: matching ({label}) must be a mapping of entity -> list of rules")
        merged |= value
    state = merged.pop("state", None)
    if state is not None and (not isinstance(state, str) or len(state.strip()) != 2):
        raise ValueError(f"{where}: matching.state must be a two-letter state code, got {state!r}")
    rules = {entity: tuple(known) for entity, known in RULES.items()} | (default_order or {})
    for entity, order in merged.items():
        if entity not in RULES:
            raise ValueError(f"{where}: matching.{entity}: unknown entity (known: {', '.join(ENTITIES)})")
        if not isinstance(order, list) or not all(isinstance(rule, str) for rule in order):
            raise ValueError(f"{where}: matching.{entity} must be a list of rule names")
        unknown = [rule for rule in order if rule not in RULES[entity]]
        if unknown:
            raise ValueError(f"{where}: matching.{entity}: unknown rule(s) {', '.join(unknown)} "
                             f"(known: {', '.join(RULES[entity])})")
        if len(set(order)) != len(order):
            raise ValueError(f"{where}: matching.{entity} lists a rule twice")
        rules[entity] = tuple(order)
    return MatchingConfig(rules=rules, state=state.strip().upper() if state else None)
