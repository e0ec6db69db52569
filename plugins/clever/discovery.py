"""Onboarding from Clever: the districts that connected the application, and their tokens.

``GET https://clever.com/oauth/tokens?owner_type=district`` (HTTP basic auth with the
application's client id and secret, the Airflow connection ``clever_app``) lists every
district-app token Clever has issued to the application, with the district's Clever id.
Each discovery run (the ``clever_discovery`` DAG):

- stores each district's token in Airflow (clever.connections.store_district_token; a
  hand-made connection ``clever_<slug>`` still wins);
- registers a district it has not seen (clever.registry): its slug comes from a config
  entry with its ``clever_district_id``, or a district already synced by hand, else from
  the district's name (``GET /v3.0/districts/{id}`` with its token) and stays fixed;
- reconnects a disconnected district whose token is listed again;
- disconnects a district whose token left the list, unless more than
  ``max_disconnect_share`` of the connected districts (and more than
  ``disconnect_floor``) would go at once: then none is disconnected and the run is held
  (an empty or truncated list must not switch a fleet off), until triggered with
  ``allow_mass_disconnect``.

A failed or refused request changes nothing. Tokens are never logged or written to the
warehouse; the registry holds ids, names and statuses.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from clever.client import CleverAPIError, CleverAuthError, CleverClient
from clever.config import DiscoverySettings, DistrictConfig
from clever.connections import AppCredentials
from clever.registry import ConnectionChange, alert_changes, disconnect, log_event, reconnect, write_file
from clever.warehouse import ensure_landing_schema

log = logging.getLogger(__name__)

TOKENS_PATH = "/oauth/tokens?owner_type=district"
_CLEVER_ID = re.compile(r"^[0-9a-f]{24}$")


@dataclass(frozen=True)
class DistrictToken:
    district_id: str
    access_token: str = field(repr=False)
    scopes: tuple[str, ...] = ()


@dataclass
class DiscoveryResult:
    listed: int = 0
    onboarded: list[str] = field(default_factory=list)
    reconnected: list[str] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # would have been disconnected: held by the share limit
    failed: list[str] = field(default_factory=list)  # Clever district ids skipped by an error (logged)

    def as_dict(self) -> dict[str, Any]:
        return {"listed": self.listed, "onboarded": self.onboarded, "reconnected": self.reconnected,
                "disconnected": self.disconnected, "held": self.held, "failed": self.failed}


def list_district_tokens(app: AppCredentials, **client_options: Any) -> list[DistrictToken]:
    """Every district token Clever lists for the application, following ``links`` rel=next."""
    tokens: dict[str, DistrictToken] = {}
    with CleverClient(app.oauth_url, app.client_secret, client_id=app.client_id, district="(application)",
                      **client_options) as client:
        path: str | None = TOKENS_PATH
        while path:
            try:
                payload, path = client.get_json(path, "oauth/tokens")
            except CleverAuthError as exc:
                raise CleverAuthError("(application)", "oauth/tokens",
                                      f"HTTP {exc.status}: Clever refused the application's client id and secret; "
                                      "check the Airflow connection clever_app (login = client id, password = "
                                      "client secret)", exc.url, exc.status) from None
            items = payload.get("data") if isinstance(payload, dict) else None
            if not isinstance(items, list):
                raise CleverAPIError("(application)", "oauth/tokens", "the token list has no 'data' list")
            for position, item in enumerate(items, start=1):
                owner = item.get("owner") if isinstance(item, dict) else None
                token = item.get("access_token") if isinstance(item, dict) else None
                if not isinstance(owner, dict) or owner.get("type") != "district" or not isinstance(token, str) \
                        or not _CLEVER_ID.match(str(owner.get("id"))):
                    raise CleverAPIError("(application)", "oauth/tokens",
                                         f"token {position} of the list has no district owner id or access_token")
                tokens[owner["id"]] = DistrictToken(owner["id"], token, tuple(item.get("scopes") or ()))
    return list(tokens.values())


def district_name(app: AppCredentials, token: DistrictToken) -> str:
    with CleverClient(app.api_url, token.access_token, district=token.district_id, max_attempts=4) as client:
        return str(client.get_record("districts", token.district_id).get("name") or "")


def slug_for(name: str, district_id: str, taken: set[str]) -> str:
    """A DAG-safe slug from the district's name, made unique with the end of its id."""
    base = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40].rstrip("_")
    if not base or not base[0].isalpha():
        base = f"d_{base}".rstrip("_")
    return base if base not in taken else f"{base}_{district_id[-6:]}"


def _synced_district_ids(conn: psycopg.Connection) -> dict[str, str]:
    """Clever district id → slug of districts already synced (each run lands its district
    record): a district set up by hand is recognised before anyone adds its id."""
    rows = conn.execute("""SELECT DISTINCT ON (d.clever_id) d.clever_id, r.district_slug
                             FROM clever_landing.districts AS d
                             JOIN clever_landing.sync_runs AS r USING (sync_run_id)
                            WHERE d.clever_id IS NOT NULL
                            ORDER BY d.clever_id, r.sync_run_id DESC""").fetchall()
    return dict(rows)


def discover(conninfo: str, app: AppCredentials, settings: DiscoverySettings, configured: list[DistrictConfig],
             store_token: Callable[[str, str], bool], *, allow_mass_disconnect: bool = False,
             claimed: tuple[set[str], set[str]] = (set(), set()), **client_options: Any) -> DiscoveryResult:
    """One discovery run (see the module's docstring); alerts every change. ``claimed``:
    the slugs and Clever ids of config entries with errors (config.configured_identities),
    which discovery must neither take nor register as discovered. ``store_token(slug,
    token)`` says whether the stored token changed. A district that fails (its name cannot
    be read, its token not stored) is skipped and named in ``result.failed``; the others
    go on."""
    tokens = list_district_tokens(app, **client_options)  # fails before anything changes
    result = DiscoveryResult(listed=len(tokens))
    by_slug = {d.slug: d for d in configured}
    changes: list[ConnectionChange] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ensure_landing_schema(conn)
        rows = {row[0]: row[1:] for row in conn.execute(
            "SELECT clever_district_id, district_slug, status, reason FROM clever_landing.district_connections "
            "WHERE clever_district_id IS NOT NULL")}
        taken = {slug for (slug,) in conn.execute("SELECT district_slug FROM clever_landing.district_connections")}
        taken |= set(by_slug) | claimed[0]
        by_config_id = {d.clever_district_id: d.slug for d in configured if d.clever_district_id}
        synced = _synced_district_ids(conn)
        listed_ids = set()
        for token in tokens:
            listed_ids.add(token.district_id)
            if token.district_id in claimed[1] and token.district_id not in rows:
                continue  # its config entry has errors: registered once the entry is fixed
            try:
                change = _register(conn, app, token, rows.get(token.district_id), by_slug, by_config_id, synced,
                                   taken, store_token)
            except Exception as exc:  # one district's failure stops no other
                log.error("discovery: Clever district %s skipped: %s", token.district_id,
                          str(exc).replace(token.access_token, "[redacted]"))
                result.failed.append(token.district_id)
                continue
            if change is not None:
                changes.append(change)
                (result.onboarded if change.event == "onboarded" else result.reconnected).append(change.slug)
        gone = [(district_id, slug) for district_id, (slug, status, _) in rows.items()
                if district_id not in listed_ids and status == "connected"]
        (connected,) = conn.execute("SELECT count(*) FROM clever_landing.district_connections "
                                    "WHERE status = 'connected'").fetchone()
        limit = max(settings.disconnect_floor, int(settings.max_disconnect_share * connected))
        with conn.transaction():
            conn.execute("UPDATE clever_landing.district_connections SET token_listed = false "
                         "WHERE clever_district_id IS NOT NULL AND NOT (clever_district_id = ANY(%s))",
                         (list(listed_ids),))
            if len(gone) > limit and not allow_mass_disconnect:
                result.held = sorted(slug for _, slug in gone)
                for slug in result.held:
                    log_event(conn, ConnectionChange(slug, "disconnect_held", "token_revoked"))
                changes.append(ConnectionChange(
                    f"{len(gone)} districts", "disconnect_held",
                    f"{len(gone)} of {connected} connected districts left the token list (limit {limit})"))
            else:
                for _, slug in gone:
                    changes.append(disconnect(conn, slug, "token_revoked"))
                    result.disconnected.append(slug)
        write_file(conn)
    for change in changes:
        log.warning("discovery: %s %s%s", change.slug, change.event, f" ({change.reason})" if change.reason else "")
    alert_changes(changes, by_slug, settings.alerts)
    return result


def _register(conn: psycopg.Connection, app: AppCredentials, token: DistrictToken, known: tuple | None,
              by_slug: dict[str, DistrictConfig], by_config_id: dict[str, str], synced: dict[str, str],
              taken: set[str], store_token: Callable[[str, str], bool]) -> ConnectionChange | None:
    """A listed token: its district registered (new) or its token kept current; a
    disconnected district reconnected, unless Clever refused the very token it still lists
    (a district disconnected as unauthorized comes back with a new token, or a run that
    reads Clever again)."""
    if known is not None:
        slug, status, reason = known
        name = source = None
    else:
        slug = by_config_id.get(token.district_id) or synced.get(token.district_id)
        if slug in by_slug:  # configured by hand: its entry keeps the settings
            name, source = by_slug[slug].name, "config"
        else:  # new, or synced by hand once and no longer configured: a DAG of its own
            name, source = district_name(app, token), "discovered"
            slug = slug or slug_for(name, token.district_id, taken)
        status = reason = None
    changed = store_token(slug, token.access_token)
    taken.add(slug)
    with conn.transaction():
        if known is None:
            conn.execute(
                """INSERT INTO clever_landing.district_connections
                       (district_slug, clever_district_id, name, source, token_listed)
                   VALUES (%s, %s, %s, %s, true)
                   ON CONFLICT (district_slug) DO UPDATE SET clever_district_id = EXCLUDED.clever_district_id,
                       token_listed = true, updated_at = clock_timestamp()""",
                (slug, token.district_id, name, source))
            status, reason = conn.execute("SELECT status, reason FROM clever_landing.district_connections "
                                          "WHERE district_slug = %s", (slug,)).fetchone()
            if source == "discovered":
                change = ConnectionChange(slug, "onboarded", None, name)
                log_event(conn, change)
                return change
        else:
            conn.execute("UPDATE clever_landing.district_connections SET token_listed = true "
                         "WHERE district_slug = %s", (slug,))
        if status == "disconnected" and (reason != "unauthorized" or changed):
            return reconnect(conn, slug, "its token is in Clever's token list again")
    return None
