"""The API client against the real simulator over real HTTP."""

from __future__ import annotations

import logging
import math

import pytest

from clever.catalog import CORE_ENDPOINTS
from clever.client import CleverAPIError, CleverAuthError, CleverClient, CleverNotFound, CleverResponseError
from tests.conftest import DEMO_TOKEN
from tests.helpers import load_records


def make_client(simulator, **kw) -> CleverClient:
    kw.setdefault("backoff_initial", 0.01)
    kw.setdefault("backoff_max", 0.05)
    return CleverClient(simulator.base_url, DEMO_TOKEN, district="demo", **kw)


@pytest.mark.parametrize("api_version", ["v3.0", "v3.1"])
def test_pages_through_every_record_in_order(simulator, district_dir, api_version):
    expected = load_records(district_dir, api_version, "users")
    client = make_client(simulator, api_version=api_version, page_size=7)
    pages = list(client.iter_pages("users"))
    assert len(pages) == math.ceil(len(expected) / 7) > 5
    assert [p.number for p in pages] == list(range(1, len(pages) + 1))
    assert all(len(p.records) == 7 for p in pages[:-1])
    assert [r for p in pages for r in p.records] == expected


def test_default_page_size_is_the_largest_clever_allows(simulator, district_dir):
    client = make_client(simulator)
    pages = list(client.iter_pages("users"))
    assert len(pages) == 1
    assert "limit=10000" in pages[0].url
    with pytest.raises(ValueError, match="413"):
        make_client(simulator, page_size=10_001)


def test_iter_records_streams_one_page_at_a_time(simulator):
    records = make_client(simulator, page_size=5).iter_records("sections")
    assert simulator.stats()["requests"] == 0, "nothing is fetched before the first record is asked for"
    for _ in range(5):
        next(records)
    assert simulator.stats()["requests"] == 1
    next(records)
    assert simulator.stats()["requests"] == 2


@pytest.mark.parametrize("endpoint", CORE_ENDPOINTS)
def test_every_core_endpoint(simulator, district_dir, endpoint):
    assert list(make_client(simulator, page_size=13).iter_records(endpoint)) == load_records(
        district_dir, "v3.0", endpoint)


def test_rate_limited_requests_wait_and_succeed(simulator, district_dir):
    simulator.set_faults(rate_limit_probability=0.4, retry_after=0.1)
    client = make_client(simulator, page_size=5)
    assert list(client.iter_records("users")) == load_records(district_dir, "v3.0", "users")
    assert _status_count(simulator, 429) > 0


def test_server_errors_and_dropped_connections_are_retried(simulator, district_dir):
    simulator.set_faults(server_error_probability=0.3, server_error_status=502, drop_connection_probability=0.1)
    client = make_client(simulator, page_size=5, max_attempts=12)
    assert list(client.iter_records("users")) == load_records(district_dir, "v3.0", "users")
    assert _status_count(simulator, 502) > 0


def test_honours_retry_after_before_retrying(simulator):
    import time
    simulator.set_faults(rate_limit_probability=1.0, retry_after=1)
    client = make_client(simulator, max_attempts=2)
    started = time.monotonic()
    with pytest.raises(CleverAPIError, match="429"):
        list(client.iter_records("schools"))
    assert time.monotonic() - started >= 1.0


def test_persistent_server_error_gives_up_naming_district_and_endpoint(simulator):
    simulator.set_faults(fail_endpoint="sections")
    client = make_client(simulator, max_attempts=3)
    with pytest.raises(CleverAPIError) as info:
        list(client.iter_records("sections"))
    message = str(info.value)
    assert "'demo'" in message and "'sections'" in message and "3 attempt" in message


def test_malformed_json_is_retried_then_reported(simulator):
    simulator.set_faults(malformed_json_endpoint="terms")
    with pytest.raises(CleverAPIError, match="malformed JSON") as info:
        list(make_client(simulator, max_attempts=2).iter_records("terms"))
    assert "'terms'" in str(info.value)


def test_truncated_page_is_retried_then_reported(simulator):
    simulator.set_faults(truncated_page_endpoint="courses")
    with pytest.raises(CleverAPIError, match="courses"):
        list(make_client(simulator, max_attempts=2).iter_records("courses"))


def test_slow_responses_time_out_and_retry(simulator):
    simulator.set_faults(slow_seconds=1.5)
    client = make_client(simulator, timeout=(2, 0.3), max_attempts=2)
    with pytest.raises(CleverAPIError, match="Timeout"):
        list(client.iter_records("districts"))


def test_revoked_token_names_endpoint_and_never_shows_token(simulator, caplog):
    caplog.set_level(logging.DEBUG)
    simulator.revoke("demo")
    client = make_client(simulator)
    with pytest.raises(CleverAuthError) as info:
        list(client.iter_records("users"))
    error = info.value
    assert error.status == 401
    assert "'users'" in str(error) and "'demo'" in str(error)
    for text in (str(error), repr(error), repr(client), caplog.text):
        assert DEMO_TOKEN not in text
    assert _status_count(simulator, 401) == 1, "an auth failure must not be retried"


def test_wrong_token_is_an_auth_error(simulator):
    client = CleverClient(simulator.base_url, "wrong-token", district="demo")
    with pytest.raises(CleverAuthError, match="401"):
        list(client.iter_records("schools"))


def test_missing_token_is_refused_before_any_request():
    with pytest.raises(CleverAuthError, match="no API token"):
        CleverClient("http://127.0.0.1:9", "", district="demo")


def test_unshared_record_is_not_found(simulator, district_dir):
    client = make_client(simulator)
    user = load_records(district_dir, "v3.0", "users")[0]
    assert client.get_record("users", user["id"]) == user
    with pytest.raises(CleverNotFound, match="404"):
        client.get_record("users", "0" * 24)


def test_off_host_next_link_is_refused(simulator):
    client = make_client(simulator)
    payload = {"data": [], "links": [{"rel": "next", "uri": "https://evil.example/v3.0/users"}]}
    with pytest.raises(CleverResponseError, match="off the API host"):
        client._next_url(payload, "users", simulator.base_url + "/v3.0/users")


def _status_count(simulator, status: int) -> int:
    return int(simulator.stats()["by_status"].get(str(status), 0))
