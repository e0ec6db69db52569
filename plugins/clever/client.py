"""Clever Data API client (v3.0 and v3.1).

Streams an endpoint page by page, following ``links`` rel=next, and yields records one
at a time, so at most one page is ever held in memory. Transient failures (429, 5xx,
timeouts, dropped connections, a page cut short) are retried with tenacity: a 429 waits
for ``Retry-After``/``X-RateLimit-Reset``, the rest back off exponentially with jitter,
capped. A page must arrive whole within ``page_timeout`` seconds (the read timeout only
bounds the wait for each piece), else it is retried. Anything that retrying cannot fix
(401/403, 404, 4xx) raises at once with the district, endpoint and URL in the message.
The bearer token lives only in the HTTP session's headers: it is never part of a
message, a repr or a log line, and no request leaves the API host: redirects and
``next`` links to another host are refused. Results come sorted by id, so each page must
start after the previous one ended: a paging loop fails instead of landing repeats.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import urllib3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from clever.catalog import MAX_PAGE_SIZE, check_api_version

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = (10.0, 120.0)  # (connect, read) seconds
DEFAULT_PAGE_TIMEOUT = 600.0  # seconds for a whole response, headers to last byte
MAX_REDIRECTS = 5
_READ_CHUNK = 1 << 16
# What Clever says when a token's app may not read an endpoint (no Secure Sync).
_OUT_OF_SCOPE = "not in token's scopes"


class CleverAPIError(RuntimeError):
    """A Clever API call failed; says which district, endpoint and URL (never the token)."""

    def __init__(self, district: str, endpoint: str, detail: str, url: str | None = None,
                 status: int | None = None):
        self.district, self.endpoint, self.detail, self.url, self.status = district, endpoint, detail, url, status
        where = f" ({url})" if url else ""
        super().__init__(f"Clever district {district!r}, endpoint {endpoint!r}: {detail}{where}")


class CleverAuthError(CleverAPIError):
    """401/403: the token is missing, revoked or lacks access. Retrying will not help."""


class CleverScopeError(CleverAuthError):
    """403 "Resource not in token's scopes": the token works, but the district's app cannot
    read this endpoint (an integration without Secure Sync)."""


class CleverNotFound(CleverAPIError):
    """404: for a single record this means Clever no longer shares it."""


class CleverResponseError(CleverAPIError):
    """Clever answered, but not with a usable page (bad JSON or shape, bad request, 413...)."""


class CleverRequestStopped(CleverAPIError):
    """The caller stopped the client (its task is ending): the page being read is abandoned."""


class _Stopped(Exception):
    """Internal: the stop event was set during a read or a wait between attempts."""


class _Transient(Exception):
    """Internal: a failure worth retrying. ``retry_after`` is the server's wish, if any."""

    def __init__(self, detail: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(detail)
        self.detail, self.retry_after, self.status = detail, retry_after, status


@dataclass(frozen=True)
class Page:
    endpoint: str
    number: int  # 1-based
    url: str
    records: list[dict[str, Any]]


def _retry_after_seconds(response: requests.Response) -> float | None:
    """Seconds to wait from Retry-After (seconds or HTTP date) or X-RateLimit-Reset (epoch)."""
    value = response.headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    reset = response.headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            return None
    return None


class _WaitHonouringRetryAfter:
    """tenacity wait: the server's Retry-After when it gave one, else exponential + jitter."""

    def __init__(self, initial: float, maximum: float, max_server_wait: float):
        self._backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)
        self._max_server_wait = max_server_wait

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self._max_server_wait) + 0.05
        return self._backoff(state)


class CleverClient:
    """Reads one district's data with that district's token.

    ``base_url`` is the API host (``https://api.clever.com``); a trailing ``/v3.x`` is
    accepted and replaced by ``api_version``.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        district: str,
        api_version: str = "v3.0",
        page_size: int = MAX_PAGE_SIZE,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        page_timeout: float = DEFAULT_PAGE_TIMEOUT,
        max_attempts: int = 8,
        max_retry_seconds: float = 900.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        max_server_wait: float = 300.0,
        session: requests.Session | None = None,
        stop: threading.Event | None = None,
        client_id: str | None = None,
    ):
        """``client_id``: authenticate as the application (HTTP basic auth, ``token`` being its
        client secret), as Clever's OAuth endpoints want, instead of with a bearer token."""
        if not token:
            raise CleverAuthError(district, "*", "no API token configured for this district")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE} (Clever answers 413 above it)")
        self.district = district
        self.api_version = check_api_version(api_version)
        self.page_size = page_size
        self.timeout = timeout
        self.page_timeout = page_timeout
        root = base_url.rstrip("/")
        for version in ("/v3.0", "/v3.1"):
            root = root.removesuffix(version)
        self.base_url = root
        self._origin = urlsplit(root)[:2]
        self._token = token
        self._session = session or requests.Session()
        self._session.headers["Authorization"] = (
            f"Bearer {token}" if client_id is None else
            "Basic " + base64.b64encode(f"{client_id}:{token}".encode()).decode())
        self._session.headers.setdefault("Accept", "application/json")
        self._stop = stop  # set by the caller: the page read or the wait in progress ends now
        self._retrying = dict(
            sleep=self._sleep,
            stop=stop_after_attempt(max_attempts) | stop_after_delay(max_retry_seconds),
            wait=_WaitHonouringRetryAfter(backoff_initial, backoff_max, max_server_wait),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )

    def __repr__(self) -> str:
        return (f"CleverClient(base_url={self.base_url!r}, district={self.district!r}, "
                f"api_version={self.api_version!r}, page_size={self.page_size})")

    def close(self) -> None:
        self._session.close()

    def _sleep(self, seconds: float) -> None:
        if self._stop is None:
            time.sleep(seconds)
        elif self._stop.wait(seconds):
            raise _Stopped

    def _check_stop(self) -> None:
        if self._stop is not None and self._stop.is_set():
            raise _Stopped

    def __enter__(self) -> CleverClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API ----------------------------------------------------------------------
    def iter_pages(self, endpoint: str, params: dict[str, Any] | None = None) -> Iterator[Page]:
        """Every page of a list endpoint, in order, following ``links`` rel=next."""
        query = {"limit": self.page_size, **(params or {})}
        url: str | None = f"{self.base_url}/{self.api_version}/{endpoint}?{urlencode(query)}"
        seen: set[str] = set()
        number = 0
        last_id: str | None = None
        while url:
            if url in seen:
                raise CleverResponseError(self.district, endpoint, "paging loops back to a page already read",
                                          self._path(url))
            seen.add(url)
            number += 1
            payload = self._get_json(url, endpoint)
            records = self._page_records(payload, endpoint, url)
            next_url = self._next_url(payload, endpoint, url)
            if next_url or number > 1:
                last_id = self._check_progress(records, last_id, endpoint, number, url, next_url is not None)
            yield Page(endpoint, number, self._path(url), records)
            url = next_url

    def iter_records(self, endpoint: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every record of a list endpoint, one at a time."""
        for page in self.iter_pages(endpoint, params):
            yield from page.records

    def get_json(self, path: str, endpoint: str) -> tuple[Any, str | None]:
        """The JSON answer of ``path`` (on the client's host, with its query), with retries,
        and the path of the page its ``links`` rel=next names (None on the last page)."""
        url = urljoin(self.base_url + "/", path)
        payload = self._get_json(url, endpoint)
        following = self._next_url(payload, endpoint, url) if isinstance(payload, dict) else None
        return payload, self._path(following) if following else None

    def get_record(self, endpoint: str, clever_id: str) -> dict[str, Any]:
        """One record; raises CleverNotFound when Clever no longer shares it."""
        url = f"{self.base_url}/{self.api_version}/{endpoint}/{clever_id}"
        payload = self._get_json(url, endpoint)
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            raise CleverResponseError(self.district, endpoint, "response has no 'data' object", self._path(url))
        return payload["data"]

    def get_me(self) -> dict[str, Any]:
        """Who the token belongs to (``GET /me``): ``{"type", "data": {"id", "district", "type"}}``;
        a user token's, e.g. a Clever Library teacher's."""
        url = f"{self.base_url}/{self.api_version}/me"
        payload = self._get_json(url, "me")
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            raise CleverResponseError(self.district, "me", "response has no 'data' object", self._path(url))
        return payload

    # -- internals -----------------------------------------------------------------------
    def _path(self, url: str) -> str:
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "[redacted]") if self._token else text

    def _check_progress(self, records: list[dict[str, Any]], last_id: str | None, endpoint: str, number: int,
                        url: str, has_next: bool) -> str | None:
        """The page's largest id, after checking the page starts after ``last_id``: results are
        sorted by id, so a page that does not is a loop (or a server that lost its place)."""
        ids = [r["id"] for r in records if isinstance(r.get("id"), str)]
        if not ids:
            if has_next:
                raise CleverResponseError(self.district, endpoint, f"page {number} has no record with a readable "
                                          "id but a next link; refusing to page on", self._path(url))
            return last_id
        first = min(ids)
        if last_id is not None and first <= last_id:
            raise CleverResponseError(
                self.district, endpoint,
                f"paging does not advance: page {number} starts at id {first!r}, not after {last_id!r} where "
                f"page {number - 1} ended (results are sorted by id); refusing to land repeated records",
                self._path(url))
        return max(ids)

    def _get_json(self, url: str, endpoint: str) -> Any:
        attempt = 0

        def once() -> Any:
            nonlocal attempt
            attempt += 1
            self._check_stop()
            return self._request_once(url, endpoint, attempt)

        try:
            return Retrying(**self._retrying)(once)
        except _Stopped:
            raise CleverRequestStopped(self.district, endpoint, f"stopped during attempt {attempt}: the task is "
                                       "ending; this page was not landed", self._path(url)) from None
        except _Transient as exc:
            raise CleverAPIError(
                self.district, endpoint,
                f"gave up after {attempt} attempt(s); last error: {self._redact(exc.detail)}",
                self._path(url), exc.status,
            ) from None

    def _get_on_api_host(self, url: str, endpoint: str) -> requests.Response:
        """GET ``url``, following redirects only while they stay on the API host (the body is
        not read yet)."""
        for _ in range(MAX_REDIRECTS + 1):
            response = self._session.get(url, timeout=self.timeout, stream=True, allow_redirects=False)
            if not response.is_redirect:
                return response
            response.close()
            target = urljoin(url, response.headers["Location"])
            if urlsplit(target)[:2] != self._origin:
                raise CleverResponseError(
                    self.district, endpoint,
                    f"HTTP {response.status_code} redirect to another host ({urlsplit(target).netloc}); "
                    "refusing to follow", self._path(url), response.status_code)
            url = target
        raise CleverResponseError(self.district, endpoint, f"more than {MAX_REDIRECTS} redirects",
                                  self._path(url), response.status_code)

    def _read_body(self, response: requests.Response, started: float) -> bytes:
        """The whole body, or _Transient once ``page_timeout`` has passed since the request
        began: a server can trickle a byte per read timeout for ever."""
        chunks = []
        try:
            while chunk := response.raw.read1(_READ_CHUNK, decode_content=True):
                self._check_stop()
                chunks.append(chunk)
                if time.monotonic() - started > self.page_timeout:
                    raise _Transient(f"the response took longer than page_timeout ({self.page_timeout:g} s); "
                                     f"{sum(map(len, chunks))} bytes had arrived")
        # As requests names them when it reads a body itself.
        except urllib3.exceptions.ProtocolError as exc:  # a body cut short
            raise requests.exceptions.ChunkedEncodingError(exc) from None
        except urllib3.exceptions.DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(exc) from None
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise requests.exceptions.ConnectionError(exc) from None
        finally:
            response.close()
        return b"".join(chunks)

    def _request_once(self, url: str, endpoint: str, attempt: int) -> Any:
        path = self._path(url)
        started = time.monotonic()
        try:
            response = self._get_on_api_host(url, endpoint)
            body = self._read_body(response, started)
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            # Refused/reset connections, time-outs and bodies cut short; the exception
            # text never holds request headers.
            self._log_retry(endpoint, path, attempt, f"{type(exc).__name__}")
            raise _Transient(f"{type(exc).__name__}: {self._redact(str(exc))}") from None
        except _Transient as exc:
            self._log_retry(endpoint, path, attempt, exc.detail)
            raise
        status = response.status_code
        if status == 429:
            wait = _retry_after_seconds(response)
            self._log_retry(endpoint, path, attempt, "HTTP 429, " + (
                f"retry after {wait:g} s" if wait is not None else "no Retry-After: backing off"))
            raise _Transient("HTTP 429 Too Many Requests", retry_after=wait, status=429)
        if status >= 500:
            self._log_retry(endpoint, path, attempt, f"HTTP {status}")
            raise _Transient(f"HTTP {status}", status=status)
        if status == 403 and _OUT_OF_SCOPE in body.decode("utf-8", "replace").lower():
            raise CleverScopeError(
                self.district, endpoint,
                "HTTP 403: Resource not in token's scopes: the district's app cannot read this endpoint (without "
                "Secure Sync a District SSO app reads only districts and users); if the district is a District SSO "
                "district, set integration: sso in config/districts.yml", path, status)
        if status in (401, 403):
            raise CleverAuthError(
                self.district, endpoint,
                f"HTTP {status}: Clever rejected this district's token (revoked, expired or not "
                f"authorised); put the district's current token in the Airflow connection clever_{self.district} "
                "(its password: the UI's Admin > Connections, or `airflow connections delete` and `add`), then "
                "trigger the DAG again",
                path, status,
            )
        if status == 404:
            raise CleverNotFound(self.district, endpoint, "HTTP 404: " + (
                "no such events (events not enabled for the district, or the cursor unknown to Clever or older "
                "than the time it keeps events)" if endpoint == "events" else "not found (not shared)"), path, status)
        if status != 200:
            raise CleverResponseError(
                self.district, endpoint,
                f"HTTP {status}: {self._redact(body[:300].decode('utf-8', 'replace'))}", path, status
            )
        try:
            return json.loads(body)
        except ValueError as exc:
            self._log_retry(endpoint, path, attempt, "malformed JSON")
            raise _Transient(f"malformed JSON in response ({exc})", status=200) from None

    def _log_retry(self, endpoint: str, path: str, attempt: int, why: str) -> None:
        log.warning("Clever district %r, endpoint %r: %s on %s (attempt %d); retrying if attempts remain",
                    self.district, endpoint, why, path, attempt)

    def _page_records(self, payload: Any, endpoint: str, url: str) -> list[dict[str, Any]]:
        items = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(items, list):
            raise CleverResponseError(self.district, endpoint, "page has no 'data' list", self._path(url))
        records = []
        for position, item in enumerate(items, start=1):
            record = item.get("data") if isinstance(item, dict) else None
            if not isinstance(record, dict):
                raise CleverResponseError(
                    self.district, endpoint, f"item {position} of the page has no 'data' object", self._path(url)
                )
            records.append(record)
        return records

    def _next_url(self, payload: dict[str, Any], endpoint: str, url: str) -> str | None:
        for link in payload.get("links") or []:
            if isinstance(link, dict) and link.get("rel") == "next" and link.get("uri"):
                nxt = urljoin(url, link["uri"])
                # The token goes wherever we follow: never follow a link off the API host.
                if urlsplit(nxt)[:2] != self._origin:
                    raise CleverResponseError(self.district, endpoint,
                                              "next link points off the API host; refusing to follow",
                                              self._path(url))
                return nxt
        return None
