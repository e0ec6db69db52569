"""The kinds of Clever integration a district's app can have, and what each one reads.

A district's ``integration`` in config/districts.yml says what Clever shares with the
application in that district, and so what its tokens can read:

- ``secure_sync`` (rostering): every data type the district shares, with the district's
  own token: districts, schools, users, sections, terms, courses (and resources when
  asked for).
- ``library`` (Clever Library): no district token; teachers connect the application
  themselves, and each teacher's own token reads the teacher (``/me``, ``/users/{id}``),
  the district record, the teacher's sections and students (clever.library). Clever
  sends a Library app the teacher's name and email, the students' first name and last
  initial, and the sections; schools, terms, courses, resources and the Events API need
  Secure Sync.

Kept free of heavy imports: the config, and so the DAG file, read it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clever.catalog import CORE_ENDPOINTS, ENDPOINTS

DEFAULT_INTEGRATION = "secure_sync"


@dataclass(frozen=True)
class Integration:
    name: str
    readable: tuple[str, ...]  # the endpoints its tokens can read; a config may ask for no other
    default_endpoints: tuple[str, ...]  # synced when the district's config lists none
    events: bool  # Clever's Events API (sync_mode: events) is available
    # Endpoints whose records Clever cuts down for this integration: validated with the
    # integration's own suite (expectations/<version>/<integration>/<endpoint>.json).
    limited_records: tuple[str, ...] = ()
    summary: str = field(default="", compare=False)


INTEGRATIONS: dict[str, Integration] = {
    integration.name: integration for integration in (
        Integration("secure_sync", ENDPOINTS, CORE_ENDPOINTS, events=True,
                    summary="rostering: every data type the district shares"),
        Integration("library", ("districts", "users", "sections"), ("districts", "users", "sections"),
                    events=False, limited_records=("users", "sections"),
                    summary="Clever Library: each connected teacher's own view (the teacher, their sections "
                            "and students; students' first name and last initial)"),
    )
}
INTEGRATION_NAMES = tuple(INTEGRATIONS)


def integration(name: str) -> Integration:
    try:
        return INTEGRATIONS[name]
    except KeyError:
        raise ValueError(f"unknown integration {name!r}; known: {', '.join(INTEGRATION_NAMES)}") from None
