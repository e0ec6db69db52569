"""The kinds of Clever integration a district's app can have, and what each one reads.

A district's ``integration`` in config/districts.yml says what Clever shares with the
application in that district, and so what its token can read:

- ``secure_sync`` (rostering): every data type the district shares: districts, schools,
  users, sections, terms, courses (and resources when asked for).
- ``sso`` (District SSO without Secure Sync): the district record and the users a
  district administrator scoped to the app, with their Clever ID, district, name, email
  (when the district has one) and roles. Schools, sections, terms, courses, resources
  and the Events API need Secure Sync: Clever answers 403 "Resource not in token's
  scopes" for them.
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
    readable: tuple[str, ...]  # the endpoints its token can read; a config may ask for no other
    default_endpoints: tuple[str, ...]  # synced when the district's config lists none
    events: bool  # Clever's Events API (sync_mode: events) is available
    # Endpoints whose records Clever cuts down for this integration: validated with the
    # integration's own suite (expectations/<version>/<integration>/<endpoint>.json).
    limited_records: tuple[str, ...] = ()
    # Default order of the user matching rules (clever.match_rules), where the catalogue's
    # relies on fields the integration never receives.
    user_match_rules: tuple[str, ...] | None = None
    summary: str = field(default="", compare=False)

    def reads(self, endpoint: str) -> bool:
        """Whether its token may read ``endpoint`` (a Data API endpoint, or ``events``)."""
        return endpoint in self.readable or (endpoint == "events" and self.events)


INTEGRATIONS: dict[str, Integration] = {
    kind.name: kind for kind in (
        Integration("secure_sync", ENDPOINTS, CORE_ENDPOINTS, events=True,
                    summary="rostering: every data type the district shares"),
        # SIS and state IDs and schools are not sent to an SSO app: the Clever ID, then email.
        Integration("sso", ("districts", "users"), ("districts", "users"), events=False,
                    limited_records=("users",), user_match_rules=("clever_id", "email"),
                    summary="District SSO: the district and its users' names, emails and roles"),
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


def refused_as_out_of_scope(integration_name: str, endpoint: str, status: int | None) -> bool:
    """Whether Clever's refusal (HTTP ``status``) of ``endpoint`` means only that the
    integration's token cannot read it: 403 ("Resource not in token's scopes") or 404 for
    an endpoint outside its scope. Inside the scope the same answer is a failure (a
    revoked token, a district that stopped sharing), as for any Secure Sync endpoint."""
    return not integration(integration_name).reads(endpoint) and status in (403, 404)
