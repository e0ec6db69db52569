"""Airflow connections → what the pipeline needs: a Clever client and a warehouse target.

District tokens and the warehouse password come only from Airflow connections
(`clever_<slug>` and `clever_warehouse`: the metadata DB, the UI or `AIRFLOW_CONN_*`
variables). They are handed to the HTTP session and libpq/dbt and never formatted into
a message. Airflow is imported inside the functions: this module is used by tasks only.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from clever.config import DistrictConfig

log = logging.getLogger(__name__)

WAREHOUSE_CONN_ID = "clever_warehouse"
# Set by clever_devkit.runner for make sync/demo/airflow: the embedded warehouse's URL, which the
# tasks use only when Airflow has no `clever_warehouse` connection at all.
EMBEDDED_WAREHOUSE_ENV = "CLEVER_EMBEDDED_WAREHOUSE_URL"

# libpq's SSL settings, read from the `clever_warehouse` connection's extra (or a URL's
# query). These four are what dbt-postgres accepts, so the tasks (psycopg) and dbt always
# connect the same way.
SSL_SETTINGS = ("sslmode", "sslrootcert", "sslcert", "sslkey")


@dataclass(frozen=True)
class WarehouseTarget:
    host: str
    port: int
    user: str
    dbname: str
    password: str = field(default="", repr=False)
    sslmode: str | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None

    def ssl_settings(self) -> dict[str, str]:
        return {name: value for name in SSL_SETTINGS if (value := getattr(self, name))}

    @property
    def conninfo(self) -> str:
        params = dict(host=self.host, port=self.port, user=self.user, dbname=self.dbname)
        if self.password:
            params["password"] = self.password
        params.update(self.ssl_settings())
        return make_conninfo(**params)

    def dbt_env(self) -> dict[str, str]:
        """Variables read by dbt_project/profiles.yml (the password under DBT_ENV_SECRET_,
        which dbt scrubs from its logs). An unset SSL setting is "", which libpq treats as
        unset and dbt-postgres does not pass for sslmode."""
        return {
            "CLEVER_WAREHOUSE_HOST": self.host,
            "CLEVER_WAREHOUSE_PORT": str(self.port),
            "CLEVER_WAREHOUSE_USER": self.user,
            "CLEVER_WAREHOUSE_DBNAME": self.dbname,
            "DBT_ENV_SECRET_WAREHOUSE_PASSWORD": self.password,
            **{f"CLEVER_WAREHOUSE_{name.upper()}": getattr(self, name) or "" for name in SSL_SETTINGS},
            # Snapshot times are `timestamp without time zone` taken in the session's zone:
            # pin it so they always mean UTC, whatever the server's default.
            "PGTZ": "UTC",
            # No JIT for dbt's sessions: the build's large plans (snapshot comparisons,
            # models with planner hints) spent seconds compiling code each, more than JIT
            # saved them (docs/PERFORMANCE.md). Kept after any options the caller set.
            "PGOPTIONS": " ".join(filter(None, [os.environ.get("PGOPTIONS", "").strip(), "-c jit=off"])),
        }

    @classmethod
    def from_conninfo(cls, conninfo: str) -> WarehouseTarget:
        params = conninfo_to_dict(conninfo)
        return cls(
            host=str(params.get("host") or "127.0.0.1"),
            port=int(params.get("port") or 5432),
            user=str(params.get("user") or "postgres"),
            dbname=str(params.get("dbname") or "postgres"),
            password=str(params.get("password") or ""),
            **{name: str(params[name]) for name in SSL_SETTINGS if params.get(name)},
        )


def warehouse_target(conn_id: str = WAREHOUSE_CONN_ID) -> WarehouseTarget:
    """The warehouse from the Airflow postgres connection, via the Postgres provider.

    If Airflow has no such connection anywhere (secrets backend, ``AIRFLOW_CONN_*``,
    metadata DB) and ``CLEVER_EMBEDDED_WAREHOUSE_URL`` is set (``make sync``/``demo``/
    ``airflow`` set it), the embedded warehouse is used; otherwise the lookup error stands.
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = PostgresHook.get_connection(conn_id)
    except AirflowNotFoundException:
        embedded = os.environ.get(EMBEDDED_WAREHOUSE_ENV)
        if conn_id != WAREHOUSE_CONN_ID or not embedded:
            raise
        log.info("no Airflow connection %r: using the embedded warehouse %s", conn_id, redacted(embedded))
        return WarehouseTarget.from_conninfo(embedded)
    extra = conn.extra_dejson or {}
    return WarehouseTarget(
        host=conn.host or "127.0.0.1",
        port=int(conn.port or 5432),
        user=conn.login or "postgres",
        dbname=conn.schema or "postgres",
        password=conn.password or "",
        **{name: str(extra[name]) for name in SSL_SETTINGS if extra.get(name)},
    )


@dataclass(frozen=True)
class CleverEndpoint:
    base_url: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class AppCredentials:
    """The application's OAuth client (``oauth_url``: https://clever.com) and the Data API
    host its district tokens are used on (``api_url``)."""

    oauth_url: str
    api_url: str
    client_id: str
    client_secret: str = field(repr=False)


class MissingConnection(LookupError):
    """The district has no Airflow connection holding its token: retrying cannot help."""


def district_token_variable(slug: str) -> str:
    """The Airflow Variable discovery stores a district's token in (Fernet-encrypted in the
    metadata DB; "access_token" in its name makes Airflow mask the value in every log)."""
    return f"clever_access_token_{slug}"


def store_district_token(slug: str, token: str) -> bool:
    """Keep a discovered district's token in Airflow (written only when it changed; returns
    whether it did).

    An Airflow 3 task cannot write connections (no metadata DB access; the Task SDK writes
    Variables), so discovered tokens are Variables; a connection ``clever_<slug>`` made by
    hand still wins over it (clever_endpoint)."""
    from airflow.sdk import Variable
    from airflow.sdk.log import mask_secret

    mask_secret(token)
    key = district_token_variable(slug)
    if Variable.get(key, default=None) == token:
        return False
    Variable.set(key, token, description=f"Clever district-app token of {slug} (clever_discovery)")
    return True


def app_credentials(conn_id: str) -> AppCredentials:
    """The application's client id and secret (login and password of the http connection
    ``conn_id``), its OAuth host (the connection's host, default https://clever.com) and
    the Data API host of its district tokens (extra ``api_url``, default
    https://api.clever.com)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise MissingConnection(
            f"discovery: no Airflow connection {conn_id!r} holds the application's Clever client id and secret. "
            f"Add it (type http, login = client id, password = client secret), e.g. `airflow connections add "
            f"{conn_id} --conn-type http --conn-login <client id> --conn-password <client secret>` "
            "(docs/OPERATIONS.md#onboarding-from-clever)") from None
    extra = conn.extra_dejson or {}
    return AppCredentials(oauth_url=http_connection_url(conn, "clever.com"),
                          api_url=str(extra.get("api_url") or "https://api.clever.com").rstrip("/"),
                          client_id=conn.login or "", client_secret=conn.password or "")


def clever_endpoint(district: DistrictConfig) -> CleverEndpoint:
    """Base URL and token from the district's http connection `clever_<slug>`, else (a
    district discovery found) the token it stored and the API host of the application's
    connection.

    ``host`` may carry the scheme (``https://api.clever.com``); otherwise the connection's
    ``schema`` field names it, as for Airflow's HTTP hook, defaulting to https.
    """
    from airflow.sdk import BaseHook, Variable
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(district.connection_id)
    except AirflowNotFoundException:
        token = Variable.get(district_token_variable(district.slug), default=None)
        if token:
            from clever.config import ConfigError, load_discovery

            try:
                api_url = app_credentials(load_discovery().app_conn_id).api_url
            except (MissingConnection, ConfigError):
                api_url = "https://api.clever.com"
            return CleverEndpoint(base_url=api_url, token=token)
        variable = f"AIRFLOW_CONN_{district.connection_id.upper()}"
        raise MissingConnection(
            f"district {district.slug!r}: no Airflow connection {district.connection_id!r} holds its Clever "
            f"token, and discovery stored none ({district_token_variable(district.slug)}). Add it in the UI "
            f"(Admin > Connections, type http, host https://api.clever.com, password = the token), with `airflow "
            f"connections add {district.connection_id} --conn-type http --conn-host https://api.clever.com "
            f"--conn-password <token>`, or as the variable {variable}; then trigger the DAG again "
            "(docs/OPERATIONS.md#add-a-district)") from None
    return CleverEndpoint(base_url=http_connection_url(conn, "api.clever.com"), token=conn.password or "")


def http_connection_url(conn: Any, default_host: str = "") -> str:
    """The URL an Airflow http connection names: ``host`` may carry the scheme (and a
    path); otherwise the ``schema`` field names it, as for Airflow's HTTP hook, defaulting
    to https; ``port`` is added when the host has none."""
    host = (conn.host or default_host).rstrip("/")
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}"
    if conn.port and not urlsplit(host).port:
        parts = urlsplit(host)
        host = parts._replace(netloc=f"{parts.netloc}:{conn.port}").geturl()
    return host


def normalise_postgres_uri(uri: str) -> str:
    """A libpq URL for the warehouse connection as Airflow writes it in ``AIRFLOW_CONN_*``.

    A URI keeps everything but its scheme (Airflow writes ``postgres://`` or
    ``postgresql+psycopg://``; libpq wants ``postgresql://``). A JSON connection is turned
    into a URL with login, password and database percent-encoded, and the libpq settings
    in its ``extra`` (``sslmode``, ``sslrootcert``, ...) as query parameters; extras that
    are not libpq's (the Postgres provider's own, e.g. ``cursor``) are left out.
    """
    if uri.lstrip().startswith("{"):
        parsed = json.loads(uri)
        extra = parsed.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra.strip() else {}
        return postgres_url({
            "user": parsed.get("login"), "password": parsed.get("password"),
            "host": parsed.get("host") or "localhost", "port": parsed.get("port") or 5432,
            "dbname": parsed.get("schema"),
            **{key: value for key, value in extra.items() if key in _libpq_keywords()},
        })
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    return f"postgresql://{rest}" if scheme.split("+")[0] in {"postgres", "postgresql"} else uri


def postgres_url(params: dict[str, Any]) -> str:
    """``postgresql://user:password@host:port/dbname?other=settings``, every part encoded."""
    params = {key: str(value) for key, value in params.items() if value not in (None, "")}
    auth = quote(params.pop("user", ""), safe="*")  # "*" is legal in a URL's user info
    if "password" in params:
        auth += ":" + quote(params.pop("password"), safe="*")
    host = params.pop("host", "")
    if host.startswith("/"):  # a Unix-socket directory
        host = quote(host, safe="")
    elif ":" in host:  # an IPv6 address
        host = f"[{host}]"
    if "port" in params:
        host += ":" + params.pop("port")
    url = f"postgresql://{auth + '@' if auth else ''}{host}/{quote(params.pop('dbname', ''), safe='')}"
    return f"{url}?{urlencode(params)}" if params else url


def redacted(conninfo: str) -> str:
    """The connection string as a URL fit to print: the password replaced by ``***``."""
    params = conninfo_to_dict(conninfo)
    if params.get("password"):
        params["password"] = "***"
    return postgres_url(params)


@functools.cache
def _libpq_keywords() -> frozenset[str]:
    return frozenset(option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults())


def teacher_token_variable(teacher_clever_id: str) -> str:
    """The Airflow Variable holding a Clever Library teacher's token ("access_token" in the
    name: Airflow masks its value in every log; Variables are Fernet-encrypted at rest)."""
    return f"clever_teacher_access_token_{teacher_clever_id}"


def library_teacher_token(teacher_clever_id: str) -> str | None:
    """A Clever Library teacher's token, as the application handed it over: the Airflow
    Variable ``clever_teacher_access_token_<teacher id>`` (docs/OPERATIONS.md#library-teachers);
    None when there is none."""
    from airflow.sdk import Variable

    return Variable.get(teacher_token_variable(teacher_clever_id), default=None) or None


def library_api_url(district: DistrictConfig) -> str:
    """The Data API host a Library district's teacher tokens are used on: the host of the
    district's connection ``clever_<slug>`` when there is one (it needs no token), else
    https://api.clever.com."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return http_connection_url(BaseHook.get_connection(district.connection_id), "api.clever.com")
    except AirflowNotFoundException:
        return "https://api.clever.com"
