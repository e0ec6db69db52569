"""The API client against small hostile HTTP servers: answers Clever would never give,
each of which must fail closed (clear error, nothing followed or landed for ever)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pytest

from clever.client import CleverAPIError, CleverClient, CleverRequestStopped, CleverResponseError
from tests.helpers import Hostile, send_json, send_trickle

TOKEN = "hostile-test-token-0123456789"


@pytest.fixture
def hostile() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler], None]], Hostile]]:
    started: list[Hostile] = []

    def start(handler):
        started.append(Hostile(handler))
        return started[-1]

    yield start
    for server in started:
        server.close()


def page(ids, next_uri: str | None = None) -> dict:
    return {"data": [{"data": {"id": i, "name": {"first": "A", "last": "B"}}} for i in ids],
            "links": [{"rel": "self", "uri": "/"}] + ([{"rel": "next", "uri": next_uri}] if next_uri else [])}


def client(server: Hostile, **kw) -> CleverClient:
    kw.setdefault("backoff_initial", 0.01)
    kw.setdefault("backoff_max", 0.05)
    return CleverClient(server.base_url, TOKEN, district="demo", **kw)


def test_a_page_trickling_past_the_page_timeout_is_retried_then_fails(hostile):
    server = hostile(lambda request: send_trickle(request, interval=0.1, count=200))
    started = time.monotonic()
    with pytest.raises(CleverAPIError, match=r"gave up after 2 attempt\(s\).*longer than page_timeout \(1 s\)"):
        list(client(server, timeout=(2, 2), page_timeout=1, max_attempts=2).iter_records("users"))
    assert time.monotonic() - started < 6, "each attempt stops at the page timeout, not at the server's pace"
    assert len(server.requests) == 2, "the slow page was asked for again"


def _trickle_forever(request):
    send_trickle(request, interval=0.1, count=300)


def _stop_after(seconds: float) -> threading.Event:
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return stop


def test_a_stop_ends_a_page_being_read_at_once(hostile):
    """A task ending (SIGTERM, its time limit) stops its extraction threads mid-page."""
    server = hostile(_trickle_forever)
    started = time.monotonic()
    with pytest.raises(CleverRequestStopped, match=r"stopped during attempt 1.*not landed"):
        list(client(server, timeout=(2, 2), page_timeout=60, stop=_stop_after(0.5)).iter_records("users"))
    assert time.monotonic() - started < 2


def test_a_stop_ends_a_wait_between_attempts_at_once(hostile):
    server = hostile(lambda request: send_json(request, {"error": "busy"}, status=503))
    started = time.monotonic()
    with pytest.raises(CleverRequestStopped):
        list(client(server, backoff_initial=30, backoff_max=30, stop=_stop_after(0.5)).iter_records("users"))
    assert time.monotonic() - started < 2, "the 30 s back-off was not waited out"
    assert len(server.requests) == 1


def test_a_paging_loop_with_ever_new_links_fails_on_the_first_repeat(hostile):
    ids = [f"{i:024x}" for i in range(1, 26)]

    def loop(request):  # the same 25 records, a next link that differs only in a made-up parameter
        n = int(parse_qs(urlsplit(request.path).query).get("n", ["0"])[0])
        send_json(request, page(ids, f"/v3.0/users?limit=25&starting_after={ids[-1]}&n={n + 1}"))

    server = hostile(loop)
    pages = client(server, page_size=25).iter_pages("users")
    assert [r["id"] for r in next(pages).records] == ids
    with pytest.raises(CleverResponseError, match="paging does not advance: page 2 starts at id"):
        next(pages)
    assert len(server.requests) == 2


def test_pages_of_records_without_readable_ids_are_not_followed(hostile):
    def numeric(request):
        send_json(request, page([1, 2, 3], "/v3.0/users?limit=3&starting_after=3"))

    server = hostile(numeric)
    with pytest.raises(CleverResponseError, match="page 1 has no record with a readable id but a next link"):
        list(client(server, page_size=3).iter_pages("users"))


def test_pages_that_advance_are_followed_to_the_end(hostile):
    ids = [f"{i:024x}" for i in range(1, 8)]

    def pages(request):
        after = parse_qs(urlsplit(request.path).query).get("starting_after", [""])[0]
        rest = [i for i in ids if i > after]
        send_json(request, page(rest[:3], f"/v3.0/users?limit=3&starting_after={rest[2]}" if len(rest) > 3 else None))

    assert [r["id"] for r in client(hostile(pages), page_size=3).iter_records("users")] == ids


def test_a_redirect_to_another_host_is_refused_before_any_request_goes_there(hostile):
    elsewhere = hostile(lambda request: send_json(request, page([f"{1:024x}"])))
    server = hostile(lambda request: send_json(request, {}, 302, {"Location": f"{elsewhere.base_url}/v3.0/users"}))
    with pytest.raises(CleverResponseError, match=r"HTTP 302 redirect to another host \(127\.0\.0\.1:\d+\)"):
        list(client(server).iter_records("users"))
    assert elsewhere.requests == [], "nothing was asked of the other host"
    assert TOKEN not in str(server.requests[1:])


def test_a_redirect_on_the_api_host_is_followed(hostile):
    def moved(request):
        if request.path.startswith("/v3.0/users"):
            send_json(request, {}, 301, {"Location": "/moved/users"})
        else:
            send_json(request, page([f"{1:024x}"]))

    server = hostile(moved)
    assert [r["id"] for r in client(server).iter_records("users")] == [f"{1:024x}"]
    assert [path for path, _ in server.requests] == ["/v3.0/users?limit=10000", "/moved/users"]
    assert all(auth == f"Bearer {TOKEN}" for _, auth in server.requests)


def test_endless_redirects_on_the_api_host_fail(hostile):
    server = hostile(lambda request: send_json(request, {}, 302, {"Location": request.path + "x"}))
    with pytest.raises(CleverResponseError, match="more than 5 redirects"):
        list(client(server).iter_records("users"))


def test_a_429_without_retry_after_says_it_backs_off(hostile, caplog):
    answers = iter([429, 200])

    def limited(request):
        status = next(answers)
        send_json(request, page([f"{1:024x}"]) if status == 200 else {"error": "slow down"}, status)

    with caplog.at_level(logging.WARNING, logger="clever.client"):
        assert len(list(client(hostile(limited)).iter_records("users"))) == 1
    assert "HTTP 429, no Retry-After: backing off" in caplog.text
    assert "None" not in caplog.text
