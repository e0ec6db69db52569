"""The Clever API simulator over real HTTP: paging, auth, rate limits, faults, reloads, CLI,
and its Events API (changes between states as events, paging, retention, 404 when off)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from clever_devkit import DEV_PYTHONPATH
from clever_devkit.events_log import Change
from clever_devkit.sample_district import TEACHER_ADMIN, Plan, generate
from clever_devkit.simulator import (
    SAMPLE_DISTRICT_DIR,
    SAMPLE_SSO_DISTRICT_DIR,
    CleverSimulator,
    DistrictSpec,
    Faults,
    Page,
    main,
)

TOKEN = "unit-sim-token-5e6f7a8b9c0d-never-echo"
OTHER_TOKEN = "unit-sim-other-token-1a2b3c4d"


# -- fixtures and helpers ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def other_district(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("other-district")
    generate(out, seed=1, district_name="Other ISD")
    return out


@pytest.fixture
def district(tmp_path: Path) -> Path:
    """A private copy of the shipped sample district that a test may rewrite."""
    return Path(shutil.copytree(SAMPLE_DISTRICT_DIR, tmp_path / "demo"))


def make_sim(district: Path, other_district: Path, **kw: Any) -> CleverSimulator:
    kw.setdefault("seed", 7)
    return CleverSimulator([DistrictSpec("demo", TOKEN, district), DistrictSpec("other", OTHER_TOKEN, other_district)],
                           **kw)


@pytest.fixture
def sim(district: Path, other_district: Path) -> Iterator[CleverSimulator]:
    with make_sim(district, other_district) as simulator:
        yield simulator


def get(sim: CleverSimulator, path: str, token: str | None = TOKEN, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kw.setdefault("timeout", 10)
    return requests.get(sim.base_url + path, headers=headers, **kw)


def post(sim: CleverSimulator, path: str, payload: Any) -> requests.Response:
    return requests.post(sim.base_url + path, json=payload, timeout=10)


def on_disk(district: Path, version: str, endpoint: str) -> list[dict[str, Any]]:
    records = json.loads((district / version / f"{endpoint}.json").read_text(encoding="utf-8"))
    return sorted(records, key=lambda r: r["id"])


def links(response: requests.Response) -> dict[str, str]:
    return {link["rel"]: link["uri"] for link in response.json()["links"]}


def write_atomically(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


# -- paging ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v3.0", "v3.1"])
def test_paging_returns_every_record_once_in_id_order(sim, district, version):
    expected = on_disk(district, version, "users")
    uri: str | None = f"/{version}/users?limit=7"
    pages = []
    while uri:
        response = get(sim, uri)
        assert response.status_code == 200
        page_links = links(response)
        assert page_links["self"] == uri
        items = response.json()["data"]
        assert all(item["uri"] == f"/{version}/users/{item['data']['id']}" for item in items)
        pages.append([item["data"] for item in items])
        uri = page_links.get("next")
    assert len(pages) == -(-len(expected) // 7) > 5
    assert all(len(page) == 7 for page in pages[:-1])
    assert [record for page in pages for record in page] == expected


def test_concurrent_clients_on_keep_alive_connections(sim, district):
    expected = [r["id"] for r in on_disk(district, "v3.1", "sections")]

    def crawl() -> list[str]:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {TOKEN}"
            uri: str | None = "/v3.1/sections?limit=6"
            ids = []
            while uri:
                page = session.get(sim.base_url + uri, timeout=10).json()
                ids += [i["data"]["id"] for i in page["data"]]
                uri = next((link["uri"] for link in page["links"] if link["rel"] == "next"), None)
            return ids

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: crawl(), range(8)))
    assert results == [expected] * 8


def test_page_size_defaults_to_100_and_allows_10000(sim, district):
    users = on_disk(district, "v3.0", "users")
    first = get(sim, "/v3.0/users")
    assert [i["data"] for i in first.json()["data"]] == users[:100]
    assert links(first)["next"] == f"/v3.0/users?starting_after={users[99]['id']}"
    everything = get(sim, "/v3.0/users?limit=10000")
    assert len(everything.json()["data"]) == len(users)
    assert set(links(everything)) == {"self"}


@pytest.mark.parametrize(("query", "status"), [
    ("limit=10001", 413), ("limit=0", 400), ("limit=-3", 400), ("limit=ten", 400),
    ("starting_after=a&ending_before=b", 400),
])
def test_bad_paging_parameters_are_refused(sim, query, status):
    response = get(sim, f"/v3.0/users?{query}")
    assert response.status_code == status
    assert response.json()["message"]


def test_ending_before_pages_backwards_with_prev_link(sim, district):
    ids = [r["id"] for r in on_disk(district, "v3.0", "sections")]
    response = get(sim, f"/v3.0/sections?limit=5&ending_before={ids[20]}")
    assert [i["data"]["id"] for i in response.json()["data"]] == ids[15:20]
    assert links(response)["prev"] == f"/v3.0/sections?limit=5&ending_before={ids[15]}"
    assert links(response)["next"] == f"/v3.0/sections?limit=5&starting_after={ids[19]}"
    assert "prev" not in links(get(sim, "/v3.0/sections?limit=5"))
    assert "prev" in links(get(sim, f"/v3.0/sections?limit=5&starting_after={ids[4]}"))


def test_starting_after_compares_ids_as_strings_even_if_the_id_is_gone(sim, district):
    ids = [r["id"] for r in on_disk(district, "v3.0", "users")]
    cursor = ids[30][:-1] + chr(ord(ids[30][-1]) + 1) if ids[30][-1] != "f" else ids[30] + "0"
    assert cursor not in ids
    response = get(sim, f"/v3.0/users?limit=10000&starting_after={cursor}")
    assert [i["data"]["id"] for i in response.json()["data"]] == [i for i in ids if i > cursor]


def test_single_record_and_unshared_record(sim, district):
    course = on_disk(district, "v3.1", "courses")[3]
    response = get(sim, f"/v3.1/courses/{course['id']}")
    assert response.json() == {"data": course, "links": [{"rel": "self", "uri": f"/v3.1/courses/{course['id']}"}]}
    missing = get(sim, f"/v3.1/courses/{'0' * 24}")
    assert missing.status_code == 404 and missing.json()["message"]
    for path in ("/v3.0/students", "/v2.1/users", "/v3.0/users/a/b", "/"):
        assert get(sim, path).status_code == 404, path


@pytest.mark.parametrize("role", ["student", "teacher", "staff", "district_admin", "contact"])
def test_role_filter_keeps_users_with_that_role_across_pages(sim, district, role):
    expected = [u for u in on_disk(district, "v3.0", "users") if u["roles"].get(role) is not None]
    uri: str | None = f"/v3.0/users?role={role}&limit=9"
    found = []
    while uri:
        response = get(sim, uri)
        found += [i["data"] for i in response.json()["data"]]
        uri = links(response).get("next")
        assert uri is None or f"role={role}" in uri
    assert found == expected and found


def test_unknown_role_is_refused(sim):
    assert get(sim, "/v3.0/users?role=principal").status_code == 400


def test_each_token_sees_its_own_district(sim, district, other_district):
    mine = get(sim, "/v3.0/districts").json()["data"]
    theirs = get(sim, "/v3.0/districts", token=OTHER_TOKEN).json()["data"]
    assert [d["data"] for d in mine] == on_disk(district, "v3.0", "districts")
    assert [d["data"] for d in theirs] == on_disk(other_district, "v3.0", "districts")
    assert mine != theirs


# -- auth ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"])
def test_missing_or_unknown_token_is_401_and_never_echoed(sim, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.get(sim.base_url + "/v3.0/users", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json()["message"]
    assert TOKEN not in response.text and TOKEN not in str(response.headers)


def test_revoked_token_gets_401_until_reset(sim):
    sim.revoke("demo")
    assert get(sim, "/v3.0/schools").status_code == 401
    assert get(sim, "/v3.0/schools", token=OTHER_TOKEN).status_code == 200
    sim.reset()
    assert get(sim, "/v3.0/schools").status_code == 200
    assert post(sim, "/_sim/revoke", {"token_district": "other"}).status_code == 200
    assert get(sim, "/v3.0/schools", token=OTHER_TOKEN).status_code == 401
    assert post(sim, "/_sim/revoke", {"token_district": "nobody"}).status_code == 404
    with pytest.raises(KeyError):
        sim.revoke("nobody")


def test_token_is_never_logged(sim, caplog):
    caplog.set_level(logging.DEBUG)
    get(sim, "/v3.0/users?limit=3")
    get(sim, "/v3.0/users", token=TOKEN + "-revoked")
    sim.set_faults(server_error_probability=1.0)
    get(sim, "/v3.0/users")
    assert caplog.records, "request lines are logged at DEBUG"
    assert TOKEN not in caplog.text


# -- rate limiting -------------------------------------------------------------------------------------------
def test_rate_limit_per_token_answers_429_with_reset_headers(district, other_district):
    with make_sim(district, other_district, rate_limit_per_minute=5) as sim:
        remaining = [get(sim, "/v3.0/terms").headers["X-RateLimit-Remaining"] for _ in range(5)]
        assert remaining == ["4", "3", "2", "1", "0"]
        throttled = get(sim, "/v3.0/terms")
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
        assert time.time() < int(throttled.headers["X-RateLimit-Reset"]) <= time.time() + 61
        assert get(sim, "/v3.0/terms", token=OTHER_TOKEN).status_code == 200, "limits are per token"
        sim.reset()
        assert get(sim, "/v3.0/terms").status_code == 200


def test_rate_limiting_can_be_turned_off(district, other_district):
    with make_sim(district, other_district, rate_limit_per_minute=None) as sim:
        response = get(sim, "/v3.0/terms")
        assert response.status_code == 200 and "X-RateLimit-Remaining" not in response.headers


# -- faults --------------------------------------------------------------------------------------------
def test_rate_limit_fault(sim):
    sim.set_faults(rate_limit_probability=1.0, retry_after=2)
    response = get(sim, "/v3.0/schools")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert time.time() < int(response.headers["X-RateLimit-Reset"]) <= time.time() + 3
    sim.set_faults(rate_limit_probability=1.0, retry_after=0.25)
    assert get(sim, "/v3.0/schools").headers["Retry-After"] == "0.25"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_fault(sim, status):
    sim.set_faults(server_error_probability=1.0, server_error_status=status)
    assert get(sim, "/v3.0/schools").status_code == status
    assert sim.stats()["by_status"] == {str(status): 1}


def test_server_error_defaults_to_503(sim):
    sim.set_faults(server_error_probability=1.0)
    assert get(sim, "/v3.0/schools").status_code == 503


def test_slow_fault_delays_answers_and_trips_client_timeouts(sim):
    sim.set_faults(slow_seconds=0.4)
    started = time.monotonic()
    assert get(sim, "/v3.0/districts").status_code == 200
    assert time.monotonic() - started >= 0.4
    with pytest.raises(requests.ReadTimeout):
        get(sim, "/v3.0/districts", timeout=(5, 0.1))
    sim.set_faults(slow_seconds=5, slow_probability=0.0)
    assert get(sim, "/v3.0/districts", timeout=(5, 2)).status_code == 200


def test_fail_endpoint_after_some_pages(sim, district):
    sim.set_faults(fail_endpoint="users", fail_after_pages=2)
    first = get(sim, "/v3.0/users?limit=5")
    second = get(sim, links(first)["next"])
    assert (first.status_code, second.status_code) == (200, 200)
    assert get(sim, links(second)["next"]).status_code == 500
    assert get(sim, links(second)["next"]).status_code == 500, "every later page fails too"
    assert get(sim, "/v3.0/schools").status_code == 200, "other endpoints are unaffected"


def test_fail_endpoint_with_no_pages_fails_at_once_and_single_records_too(sim, district):
    sim.set_faults(fail_endpoint="sections")
    assert get(sim, "/v3.0/sections").status_code == 500
    assert get(sim, f"/v3.0/sections/{on_disk(district, 'v3.0', 'sections')[0]['id']}").status_code == 500


def test_malformed_json_after_some_pages(sim):
    sim.set_faults(malformed_json_endpoint="terms", malformed_after_pages=1)
    assert get(sim, "/v3.0/terms").json()["data"]
    broken = get(sim, "/v3.0/terms")
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        json.loads(broken.content)


def test_truncated_page_promises_more_bytes_than_it_sends(sim):
    sim.set_faults(truncated_page_endpoint="courses")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(sim, "/v3.0/courses")
    host, port = urlsplit(sim.base_url).hostname, urlsplit(sim.base_url).port
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(f"GET /v3.0/courses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    promised = int(headers[b"Content-Length"])
    assert 0 < len(body) < promised
    assert sim.stats()["by_status"] == {"truncated": 2}


def test_dropped_connection(sim):
    sim.set_faults(drop_connection_probability=1.0)
    with pytest.raises(requests.ConnectionError):
        get(sim, "/v3.0/schools")
    assert sim.stats()["by_status"] == {"dropped": 1}


def test_max_faults_fails_n_times_then_recovers(sim):
    sim.set_faults(server_error_probability=1.0, max_faults=2)
    assert [get(sim, "/v3.0/schools").status_code for _ in range(4)] == [503, 503, 200, 200]
    assert sim.stats()["faults_injected"] == 2


def test_probabilistic_faults_are_deterministic_for_a_seed(district, other_district):
    def statuses(seed: int) -> list[int]:
        with make_sim(district, other_district, seed=seed,
                      faults={"server_error_probability": 0.5, "rate_limit_probability": 0.2}) as sim:
            return [get(sim, "/v3.0/terms").status_code for _ in range(30)]

    first = statuses(3)
    assert first == statuses(3)
    assert {200, 429, 503} == set(first)
    assert first != statuses(4)


def test_faults_never_touch_control_routes(sim):
    sim.set_faults(drop_connection_probability=1.0)
    assert requests.get(sim.base_url + "/_sim/stats", timeout=5).status_code == 200
    assert requests.get(sim.base_url + "/_sim/health", timeout=5).json()["status"] == "ok"


def test_invalid_fault_settings_are_refused(sim):
    for bad in ({"no_such_fault": 1}, {"server_error_probability": 1.5}, {"server_error_status": 404},
                {"fail_endpoint": "students"}, {"fail_after_pages": -1}, {"slow_seconds": "slow"}):
        with pytest.raises(ValueError):
            sim.set_faults(**bad)
        assert post(sim, "/_sim/faults", bad).status_code == 400
    assert requests.post(sim.base_url + "/_sim/faults", data=b"{not json", timeout=5).status_code == 400


def test_control_endpoints(sim):
    assert post(sim, "/_sim/faults", {"fail_endpoint": "schools"}).json()["faults"]["fail_endpoint"] == "schools"
    assert requests.get(sim.base_url + "/_sim/faults", timeout=5).json()["faults"]["fail_endpoint"] == "schools"
    assert get(sim, "/v3.0/schools").status_code == 500
    assert get(sim, "/v3.0/terms").status_code == 200
    assert get(sim, "/v3.0/terms", token=None).status_code == 401
    stats = requests.get(sim.base_url + "/_sim/stats", timeout=5).json()
    assert stats["requests"] == 3
    assert stats["by_status"] == {"500": 1, "200": 1, "401": 1}
    assert stats["by_path"] == {"/v3.0/schools": {"500": 1}, "/v3.0/terms": {"200": 1, "401": 1}}
    assert stats["faults_injected"] == 1
    assert post(sim, "/_sim/reset", {}).status_code == 200
    assert get(sim, "/v3.0/schools").status_code == 200
    assert requests.get(sim.base_url + "/_sim/stats", timeout=5).json()["requests"] == 1
    assert requests.get(sim.base_url + "/_sim/nothing", timeout=5).status_code == 404


def test_faults_given_at_construction(district, other_district):
    with make_sim(district, other_district, faults=Faults(fail_endpoint="terms")) as sim:
        assert get(sim, "/v3.0/terms").status_code == 500
        assert get(sim, "/v3.0/courses").status_code == 200


# -- data reloads and sources ----------------------------------------------------------------------------
def test_rewritten_files_are_served_without_restart(sim, district):
    path = district / "v3.0" / "users.json"
    users = on_disk(district, "v3.0", "users")
    assert len(get(sim, "/v3.0/users?limit=10000").json()["data"]) == len(users)

    gone, renamed = users[0], dict(users[1], name={"first": "Renamed", "last": "Person"})
    write_atomically(path, [renamed, *users[2:]])
    served = [i["data"] for i in get(sim, "/v3.0/users?limit=10000").json()["data"]]
    assert served == [renamed, *users[2:]]
    assert get(sim, f"/v3.0/users/{gone['id']}").status_code == 404

    path.write_text(json.dumps(users), encoding="utf-8")  # in place, same inode
    assert [i["data"] for i in get(sim, "/v3.0/users?limit=10000").json()["data"]] == users
    assert len(get(sim, "/v3.1/users?limit=10000").json()["data"]) == len(on_disk(district, "v3.1", "users"))


def test_unparseable_rewrite_keeps_serving_the_last_good_data(sim, district):
    schools = on_disk(district, "v3.0", "schools")
    assert len(get(sim, "/v3.0/schools").json()["data"]) == len(schools)
    (district / "v3.0" / "schools.json").write_text('[{"id": "half-writ', encoding="utf-8")
    assert [i["data"] for i in get(sim, "/v3.0/schools").json()["data"]] == schools
    write_atomically(district / "v3.0" / "schools.json", schools[:2])
    assert len(get(sim, "/v3.0/schools").json()["data"]) == 2


def test_missing_endpoint_file_serves_an_empty_list(sim, district):
    (district / "v3.0" / "resources.json").unlink()
    response = get(sim, "/v3.0/resources")
    assert response.json() == {"data": [], "links": [{"rel": "self", "uri": "/v3.0/resources"}]}


def test_a_district_sso_token_reads_districts_and_users_only(district):
    """An sso district answers 403 "Resource not in token's scopes" outside districts and
    users (events too), as Clever does for an app without Secure Sync; the Secure Sync
    district beside it reads everything."""
    specs = [DistrictSpec("demo", TOKEN, district),
             DistrictSpec("sso", OTHER_TOKEN, SAMPLE_SSO_DISTRICT_DIR, integration="sso")]
    with CleverSimulator(specs) as sim:
        users = get(sim, "/v3.0/users?limit=10000", token=OTHER_TOKEN).json()["data"]
        assert len(users) == len(on_disk(SAMPLE_SSO_DISTRICT_DIR, "v3.0", "users"))
        assert get(sim, "/v3.1/districts", token=OTHER_TOKEN).status_code == 200
        one = users[0]["data"]["id"]
        assert get(sim, f"/v3.0/users/{one}", token=OTHER_TOKEN).json()["data"]["id"] == one
        for path in ("/v3.0/schools", "/v3.0/sections", "/v3.1/terms", "/v3.0/courses", "/v3.0/resources",
                     "/v3.0/events", "/v3.0/sections/" + "0" * 24):
            refused = get(sim, path, token=OTHER_TOKEN)
            assert (refused.status_code, refused.json()) == (403, {"message": "Resource not in token's scopes"}), path
            assert get(sim, path.replace("/" + "0" * 24, ""), token=TOKEN).status_code == 200, path
    with pytest.raises(ValueError, match="unknown integration 'sso_plus'"):
        DistrictSpec("x", TOKEN, district, integration="sso_plus")


class CountingSource:
    """A generated (file-less) source: user ids are 24-digit numbers, 0..n-1."""

    def __init__(self, n: int):
        self.ids = [f"{i:024d}" for i in range(n)]

    def record(self, record_id: str) -> dict[str, Any]:
        return {"id": record_id, "district": "d" * 24, "roles": {"student": {}}}

    def list_page(self, version, endpoint, starting_after, ending_before, limit, role) -> Page:
        ids = self.ids if endpoint == "users" else []
        start = sum(1 for i in ids if i <= starting_after) if starting_after else 0
        chosen = ids[start:start + limit]
        return Page([self.record(i) for i in chosen], start > 0, start + limit < len(ids))

    def get(self, version, endpoint, record_id):
        return self.record(record_id) if endpoint == "users" and record_id in self.ids else None


def test_any_data_source_can_back_a_district():
    with CleverSimulator([DistrictSpec("generated", TOKEN, source=CountingSource(23))]) as sim:
        uri: str | None = "/v3.1/users?limit=10"
        seen = []
        while uri:
            response = get(sim, uri)
            seen += [i["data"]["id"] for i in response.json()["data"]]
            uri = links(response).get("next")
        assert seen == [f"{i:024d}" for i in range(23)]
        assert get(sim, f"/v3.1/users/{seen[5]}").json()["data"]["id"] == seen[5]


def test_district_specs_are_validated(district):
    with pytest.raises(ValueError):
        DistrictSpec("x", TOKEN)
    with pytest.raises(ValueError):
        DistrictSpec("x", TOKEN, district, source=CountingSource(1))
    with pytest.raises(ValueError):
        DistrictSpec("x", "", district)
    with pytest.raises(ValueError, match="unique"):
        CleverSimulator([DistrictSpec("a", TOKEN, district), DistrictSpec("b", TOKEN, district)])
    assert TOKEN not in repr(DistrictSpec("x", TOKEN, district))


# -- v3.0 vs v3.1 --------------------------------------------------------------------------------------
def test_teacher_who_is_district_admin_differs_between_versions(sim):
    teacher_id = Plan().id("teacher", TEACHER_ADMIN)
    v30_admins = [i["data"] for i in get(sim, "/v3.0/users?role=district_admin").json()["data"]]
    v31_admins = [i["data"] for i in get(sim, "/v3.1/users?role=district_admin").json()["data"]]
    v30_teacher = get(sim, f"/v3.0/users/{teacher_id}").json()["data"]
    v31_teacher = get(sim, f"/v3.1/users/{teacher_id}").json()["data"]

    v30_twin = [u for u in v30_admins if u["email"] == v30_teacher["email"]]
    assert len(v30_twin) == 1 and v30_twin[0]["id"] != teacher_id
    assert v30_twin[0]["name"] == v30_teacher["name"]
    assert set(v30_teacher["roles"]) == {"teacher"} and set(v30_twin[0]["roles"]) == {"district_admin"}

    assert set(v31_teacher["roles"]) == {"teacher", "district_admin"}
    assert teacher_id in {u["id"] for u in v31_admins}
    assert get(sim, f"/v3.1/users/{v30_twin[0]['id']}").status_code == 404
    assert len(v31_admins) == len(v30_admins)


# -- CLI ------------------------------------------------------------------------------------------------
def run_cli(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "clever_devkit.simulator", "--port", "0", *args],
        env={**os.environ, "PYTHONPATH": DEV_PYTHONPATH, **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, line


def stop_cli(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=10)


def test_cli_serves_given_districts_until_sigterm(district):
    process, line = run_cli(["--district", f"demo=env:UNIT_SIM_TOKEN@{district}", "--district",
                             f"spare=spare-token@{district}", "--fault", "fail_endpoint=terms",
                             "--fault", "fail_after_pages=1", "--integration", "spare=sso"], {"UNIT_SIM_TOKEN": TOKEN})
    try:
        assert line.startswith("Clever API simulator listening on http://127.0.0.1:")
        assert line.rstrip().endswith("(districts: demo, spare)")
        base = line.split(" on ")[1].split()[0]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.get(f"{base}/v3.0/terms", headers=auth, timeout=5).status_code == 200
        assert requests.get(f"{base}/v3.0/terms", headers=auth, timeout=5).status_code == 500
        spare = {"Authorization": "Bearer spare-token"}  # served with a District SSO token's scope
        assert requests.get(f"{base}/v3.0/users", headers=spare, timeout=5).status_code == 200
        assert requests.get(f"{base}/v3.0/sections", headers=spare, timeout=5).status_code == 403
    finally:
        assert stop_cli(process) == 0
    output = process.communicate()
    assert TOKEN not in "".join(output)


def test_cli_defaults_to_the_sample_district(district):
    process, line = run_cli(["--log-level", "DEBUG"], {"CLEVER_SIM_TOKEN": TOKEN})
    try:
        base = line.split(" on ")[1].split()[0]
        assert line.rstrip().endswith("(districts: demo)")
        response = requests.get(f"{base}/v3.0/districts", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert response.json()["data"][0]["data"]["name"] == "Certification ISD"
    finally:
        assert stop_cli(process) == 0
    assert TOKEN not in "".join(process.communicate()), "debug logging must not show the token"


@pytest.mark.parametrize("args", [
    ["--district", "demo=secret-cli-token"],
    ["--district", "demo=secret-cli-token@"],
    ["--fault", "no_such_fault=1"],
    ["--fault", "server_error_probability"],
    ["--integration", "demo=sso_plus"],
    ["--integration", "nowhere=sso"],
])
def test_cli_rejects_bad_arguments_without_echoing_tokens(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert "secret-cli-token" not in capsys.readouterr().err


# -- events (Clever's Events API) -----------------------------------------------------------------
def events(sim, version: str = "v3.0", **params: Any) -> requests.Response:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return get(sim, f"/{version}/events" + (f"?{query}" if query else ""))


def all_events(sim, version: str = "v3.0", limit: int = 2, **params: Any) -> list[dict[str, Any]]:
    """Every event, following rel=next links."""
    url, found = f"/{version}/events?limit={limit}" + "".join(f"&{k}={v}" for k, v in params.items()), []
    while url:
        page = get(sim, url)
        assert page.status_code == 200, page.text
        found += [item["data"] for item in page.json()["data"]]
        url = next((link["uri"] for link in page.json()["links"] if link["rel"] == "next"), None)
    return found


def next_day(district: Path) -> dict[str, Any]:
    """Unshare a user, rename another, add a school; returns what changed."""
    users = on_disk(district, "v3.0", "users")
    gone, renamed = users[0], {**users[1], "name": {**users[1]["name"], "first": "Renamed"}}
    write_atomically(district / "v3.0" / "users.json", [renamed, *users[2:]])
    schools = on_disk(district, "v3.0", "schools")
    added = {**schools[0], "id": "ffffffffffffffffffffff01", "name": "New School"}
    write_atomically(district / "v3.0" / "schools.json", [*schools, added])
    return {"gone": gone, "renamed": renamed, "before_rename": users[1], "added": added}


def test_changes_between_states_become_events_in_order(sim, district):
    assert events(sim).json()["data"] == []  # nothing changed yet
    day2 = next_day(district)
    found = all_events(sim)
    assert [(e["type"], e["data"]["object"]["id"]) for e in found] == [
        ("schools.created", day2["added"]["id"]),
        ("users.deleted", day2["gone"]["id"]),
        ("users.updated", day2["renamed"]["id"]),
    ]
    assert found[1]["data"]["object"] == day2["gone"]  # a deletion carries the record's last version
    assert found[2]["data"]["object"] == day2["renamed"]
    assert found[2]["previous_attributes"] == {"name": day2["before_rename"]["name"]}
    ids = [e["id"] for e in found]
    assert ids == sorted(ids) and len(set(ids)) == 3 and all(len(i) == 24 for i in ids)
    assert all(e["created"].endswith("Z") for e in found)
    # v3.1 is its own stream: its files did not change
    assert events(sim, "v3.1").json()["data"] == []


def test_a_cursor_resumes_after_the_last_event_read(sim, district):
    next_day(district)
    first, *rest = all_events(sim)
    after = events(sim, starting_after=first["id"]).json()["data"]
    assert [item["data"]["id"] for item in after] == [e["id"] for e in rest]
    assert events(sim, starting_after=rest[-1]["id"]).json() == {
        "data": [], "links": [{"rel": "self", "uri": f"/v3.0/events?starting_after={rest[-1]['id']}"}]}
    one = get(sim, f"/v3.0/events/{first['id']}")
    assert one.status_code == 200 and one.json()["data"] == first
    assert get(sim, "/v3.0/events/000000000000000000000000").status_code == 404


def test_record_type_filters_events(sim, district):
    next_day(district)
    assert [e["type"] for e in all_events(sim, record_type="users")] == ["users.deleted", "users.updated"]


def test_events_off_or_a_cursor_not_held_answer_404(sim, district):
    next_day(district)
    first = all_events(sim)[0]
    assert events(sim, starting_after="0" * 24).status_code == 404  # never issued
    sim.set_events("demo", enabled=False)
    off = events(sim)
    assert off.status_code == 404 and "not enabled" in off.json()["message"]
    assert post(sim, "/_sim/events/settings", {"district": "demo", "enabled": True}).status_code == 200
    assert events(sim, starting_after=first["id"]).status_code == 200
    sim.set_events("demo", retention_seconds=0.2)
    time.sleep(0.5)
    gone = events(sim, starting_after=first["id"])  # older than the retention: fall back to a full sync
    assert gone.status_code == 404 and "older than" in gone.json()["message"]
    assert events(sim).json()["data"] == []


def test_events_can_be_given_as_a_list(sim):
    record = {"id": "5f0000000000000000000001", "name": "Given"}
    response = post(sim, "/_sim/events", {"district": "demo", "version": "v3.1", "changes": [
        {"endpoint": "terms", "action": "created", "record": record}]})
    assert response.status_code == 200
    (given,) = response.json()["events"]
    assert given["type"] == "terms.created" and given["data"]["object"] == record
    assert [e["id"] for e in all_events(sim, "v3.1")] == [given["id"]]
    with pytest.raises(ValueError, match="no event type"):
        sim.add_events("demo", "v3.1", [Change("terms", "renamed", record)])


def test_events_need_the_districts_token(sim):
    assert get(sim, "/v3.0/events", token=None).status_code == 401


def test_a_batch_of_events_is_all_or_nothing_and_ids_stay_in_order_if_the_clock_steps_back():
    from clever_devkit.events_log import EventLog

    now = [1_000_000.0]
    log_ = EventLog(clock=lambda: now[0])
    record = {"id": "a"}
    with pytest.raises(ValueError, match="no event type"):
        log_.append([Change("terms", "created", record), Change("terms", "renamed", record)])
    assert log_.page(None, None, 10).records == []
    (first,) = log_.append([Change("terms", "created", record)])
    now[0] -= 3600  # the clock stepped back
    (second,) = log_.append([Change("terms", "deleted", record)])
    assert second["id"] > first["id"]
    assert [e["id"] for e in log_.page(first["id"], None, 10).records] == [second["id"]]


def test_a_malformed_list_of_events_is_a_400(sim):
    response = post(sim, "/_sim/events", {"district": "demo", "changes": [{"endpoint": "terms"}]})
    assert response.status_code == 400 and "endpoint, action and record" in response.json()["message"]


# -- onboarding: the application's token list ----------------------------------------------------------
def test_the_token_list_needs_the_application_credentials_and_follows_disconnects(district, other_district):
    app = ("sim-client", "sim-client-secret")
    with make_sim(district, other_district, app_credentials=app) as simulator:
        url = simulator.base_url + "/oauth/tokens?owner_type=district"
        assert requests.get(url, auth=("sim-client", "wrong"), timeout=10).status_code == 401
        assert requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 401
        assert requests.get(simulator.base_url + "/oauth/tokens", auth=app, timeout=10).status_code == 400
        listed = requests.get(url, auth=app, timeout=10).json()
        owners = {t["owner"]["id"]: t["access_token"] for t in listed["data"]}
        demo_id, other_id = simulator.district_id("demo"), simulator.district_id("other")
        assert owners == {demo_id: TOKEN, other_id: OTHER_TOKEN} and demo_id != other_id
        assert {t["owner"]["type"] for t in listed["data"]} == {"district"}
        assert get(simulator, f"/v3.0/districts/{demo_id}").json()["data"]["id"] == demo_id

        simulator.disconnect("other")
        assert [t["owner"]["id"] for t in requests.get(url, auth=app, timeout=10).json()["data"]] == [demo_id]
        assert get(simulator, "/v3.0/users", token=OTHER_TOKEN).status_code == 401

        simulator.reconnect("other", token="a-new-token-for-other")
        owners = {t["owner"]["id"]: t["access_token"] for t in requests.get(url, auth=app, timeout=10).json()["data"]}
        assert owners[other_id] == "a-new-token-for-other"
        assert get(simulator, "/v3.0/users", token=OTHER_TOKEN).status_code == 401
        assert get(simulator, "/v3.0/users", token="a-new-token-for-other").status_code == 200

        assert post(simulator, "/_sim/disconnect", {"district": "demo"}).status_code == 200
        assert requests.get(url, auth=app, timeout=10).json()["data"][0]["owner"]["id"] == other_id
        assert post(simulator, "/_sim/reconnect", {"district": "demo"}).status_code == 200
        assert len(requests.get(url, auth=app, timeout=10).json()["data"]) == 2
    with make_sim(district, other_district) as simulator:  # no application client: no such route
        assert requests.get(simulator.base_url + "/oauth/tokens?owner_type=district", auth=app,
                            timeout=10).status_code in (401, 404)


# -- Clever Library teachers ----------------------------------------------------------------------
TEACHER_TOKEN, CO_TEACHER_TOKEN = "unit-sim-teacher-token-77aa", "unit-sim-co-teacher-token-88bb"


def co_taught(district: Path) -> tuple[str, str, dict[str, Any]]:
    """A section with two teachers: (its primary teacher, a co-teacher, the section)."""
    section = next(s for s in on_disk(district, "v3.0", "sections") if len(set(s.get("teachers") or [])) > 1)
    return section["teacher"], next(t for t in section["teachers"] if t != section["teacher"]), section


@pytest.fixture
def library_sim(district: Path) -> Iterator[tuple[CleverSimulator, str, str]]:
    teacher, co_teacher, _ = co_taught(district)
    spec = DistrictSpec("lib", TOKEN, district, teachers={TEACHER_TOKEN: teacher, CO_TEACHER_TOKEN: co_teacher})
    with CleverSimulator([spec], seed=7) as simulator:
        yield simulator, teacher, co_teacher


def all_pages(sim: CleverSimulator, path: str, token: str) -> list[dict[str, Any]]:
    records, url = [], f"{path}?limit=3"
    while url:
        response = get(sim, url, token)
        assert response.status_code == 200, response.text
        records += [item["data"] for item in response.json()["data"]]
        url = links(response).get("next")
    return records


def test_a_library_teacher_reads_only_their_own_view_cut_to_the_library_fields(library_sim, district):
    sim, teacher, co_teacher = library_sim
    me = get(sim, "/v3.0/me", TEACHER_TOKEN).json()
    assert me["type"] == "teacher" and me["data"]["id"] == teacher
    own = [s for s in on_disk(district, "v3.0", "sections") if teacher in s["teachers"] or s["teacher"] == teacher]
    sections = all_pages(sim, f"/v3.0/users/{teacher}/sections", TEACHER_TOKEN)
    assert [s["id"] for s in sections] == [s["id"] for s in own]
    assert all("school" not in s and "sis_id" not in s and "term_id" not in s for s in sections)
    assert [s["students"] for s in sections] == [s["students"] for s in own]
    users = {u["id"]: u for u in on_disk(district, "v3.0", "users")}
    students = all_pages(sim, f"/v3.0/users/{teacher}/mystudents", TEACHER_TOKEN)
    assert {s["id"] for s in students} == {st for s in own for st in s["students"]}
    for student in students:
        full = users[student["id"]]
        assert student["name"] == {"first": full["name"]["first"], "last": full["name"]["last"][0]}
        assert student["roles"] == {"student": {}} and "email" not in student
    record = get(sim, f"/v3.0/users/{teacher}", TEACHER_TOKEN).json()["data"]
    assert record["email"] == users[teacher]["email"] and record["roles"] == {"teacher": {}}
    assert get(sim, f"/v3.0/districts/{me['data']['district']}", TEACHER_TOKEN).status_code == 200
    # nothing beyond the teacher's own view
    outsider = next(u for u in users if u not in {teacher} | {st for s in own for st in s["students"]})
    assert get(sim, f"/v3.0/users/{outsider}", TEACHER_TOKEN).status_code == 404
    assert get(sim, f"/v3.0/users/{co_teacher}/sections", TEACHER_TOKEN).status_code == 403
    assert get(sim, f"/v3.0/users/{co_teacher}/mystudents", TEACHER_TOKEN).status_code == 403
    for route in ("/v3.0/users", "/v3.0/sections", "/v3.0/schools", "/v3.0/events"):
        assert get(sim, route, TEACHER_TOKEN).status_code == 403, route


def test_a_revoked_library_teacher_gets_401_and_the_other_teacher_does_not(library_sim):
    sim, teacher, co_teacher = library_sim
    assert post(sim, "/_sim/revoke", {"teacher": teacher}).status_code == 200
    assert get(sim, "/v3.0/me", TEACHER_TOKEN).status_code == 401
    assert get(sim, "/v3.0/me", CO_TEACHER_TOKEN).json()["data"]["id"] == co_teacher
    sim.reset()
    assert get(sim, "/v3.0/me", TEACHER_TOKEN).status_code == 200


def test_teacher_tokens_must_differ_from_district_tokens(district):
    with pytest.raises(ValueError, match="teacher tokens"):
        CleverSimulator([DistrictSpec("lib", TOKEN, district, teachers={TOKEN: "x"})])
