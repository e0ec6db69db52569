"""The id-sorted district store: written in bounded runs, served page by page by the
simulator exactly as the JSON-array layout is, and its "next day" of changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from clever.client import CleverClient
from clever_devkit import district_store
from clever_devkit.district_store import derive_changes, events_file, iter_stored, write_sorted
from clever_devkit.events_log import Change, diff_events
from clever_devkit.sample_district import generate
from clever_devkit.simulator import CleverSimulator

TOKEN = "store-test-token-never-logged"
STUDENTS = 600


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    generate(base / "json", students=STUDENTS, versions=["v3.0"])
    original = district_store.RUN_LINES
    district_store.RUN_LINES = 97  # many small sorted runs: the merge is what is tested
    try:
        generate(base / "sorted", students=STUDENTS, layout="sorted", versions=["v3.0"])
    finally:
        district_store.RUN_LINES = original
    return {"json": base / "json", "sorted": base / "sorted"}


@pytest.fixture(scope="module")
def servers(layouts: dict[str, Path]) -> Iterator[dict[str, CleverSimulator]]:
    sims = {name: CleverSimulator({"demo": (TOKEN, path)}, rate_limit_per_minute=None).start()
            for name, path in layouts.items()}
    try:
        yield sims
    finally:
        for sim in sims.values():
            sim.stop()


def get(sim: CleverSimulator, path: str) -> requests.Response:
    return requests.get(sim.base_url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)


def test_sorted_file_is_in_id_order_with_an_index(layouts):
    lines = (layouts["sorted"] / "v3.0" / "users.jsonl").read_bytes().splitlines()
    ids = [line.split(b"\t", 1)[0].decode() for line in lines]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    index = json.loads((layouts["sorted"] / "v3.0" / "users.idx.json").read_text())
    assert index["count"] == len(lines)
    assert [e[0] for e in index["entries"]] == ids[::index["stride"]]
    records = list(iter_stored(layouts["sorted"], "v3.0", "users"))
    assert records == sorted(json.loads((layouts["json"] / "v3.0" / "users.json").read_text()), key=lambda r: r["id"])


@pytest.mark.parametrize("endpoint", ["users", "sections", "districts", "resources"])
@pytest.mark.parametrize("page_size", [10_000, 37])
def test_both_layouts_serve_the_same_pages(servers, endpoint, page_size):
    pages = {}
    for name, sim in servers.items():
        with CleverClient(sim.base_url, TOKEN, district="demo", page_size=page_size) as client:
            pages[name] = [(page.number, page.records) for page in client.iter_pages(endpoint)]
    assert pages["sorted"] == pages["json"]


@pytest.mark.parametrize("query", [
    "limit=50&ending_before={id}", "limit=7&starting_after={id}", "limit=40&role=student&ending_before={id}",
    "limit=40&role=teacher&starting_after={id}", "limit=100&role=contact",
])
def test_paging_backwards_and_role_filters_match(servers, layouts, query):
    ids = sorted(r["id"] for r in json.loads((layouts["json"] / "v3.0" / "users.json").read_text()))
    path = "/v3.0/users?" + query.format(id=ids[len(ids) // 2])
    answers = {name: get(sim, path) for name, sim in servers.items()}
    assert answers["sorted"].status_code == answers["json"].status_code == 200
    assert answers["sorted"].json() == answers["json"].json()


def test_single_records_and_unknown_ids(servers, layouts):
    some_id = json.loads((layouts["json"] / "v3.0" / "sections.json").read_text())[5]["id"]
    for path in (f"/v3.0/sections/{some_id}", "/v3.0/sections/000000000000000000000000", "/v3.0/sections/zzz"):
        answers = {name: get(sim, path) for name, sim in servers.items()}
        assert answers["sorted"].status_code == answers["json"].status_code
        assert answers["sorted"].json() == answers["json"].json()


def test_writer_refuses_unsorted_or_repeated_ids(tmp_path):
    with pytest.raises(ValueError, match="out of order or repeated"):
        district_store.write_sorted_lines([b"b\t{}\n", b"a\t{}\n"], tmp_path / "x.jsonl")
    write_sorted([{"id": "b"}, {"id": "a"}], tmp_path / "y.jsonl")
    assert (tmp_path / "y.jsonl").read_bytes() == b'a\t{"id":"a"}\nb\t{"id":"b"}\n'


def test_a_rewritten_store_is_served_without_restart(tmp_path):
    directory = tmp_path / "district"
    write_sorted([{"id": "a1", "name": "one"}], directory / "v3.0" / "districts.jsonl")
    with CleverSimulator({"demo": (TOKEN, directory)}, rate_limit_per_minute=None) as sim:
        assert [r["data"]["name"] for r in get(sim, "/v3.0/districts").json()["data"]] == ["one"]
        write_sorted([{"id": "a1", "name": "two"}], directory / "v3.0" / "districts.jsonl")
        assert [r["data"]["name"] for r in get(sim, "/v3.0/districts").json()["data"]] == ["two"]


def test_next_day_changes_one_percent_of_users_and_enrolments(layouts, tmp_path):
    counts = derive_changes(layouts["sorted"], tmp_path / "day2", rate=0.05, seed=3)
    before = {e: {r["id"]: r for r in iter_stored(layouts["sorted"], "v3.0", e)} for e in ("users", "sections")}
    after = {e: {r["id"]: r for r in iter_stored(tmp_path / "day2", "v3.0", e)} for e in ("users", "sections")}
    assert before["users"].keys() == after["users"].keys() and before["sections"].keys() == after["sections"].keys()
    edited = [i for i in before["users"] if before["users"][i] != after["users"][i]]
    assert len(edited) == counts.users_changed and 0.02 < len(edited) / len(before["users"]) < 0.09
    assert all(after["users"][i]["name"]["last"].endswith("-Ortiz") for i in edited)

    def pairs(sections: dict) -> set[tuple[str, str]]:
        return {(s["id"], u) for s in sections.values() for u in s.get("students") or []}

    old, new = pairs(before["sections"]), pairs(after["sections"])
    assert len(old - new) == counts.enrollments_removed > 0
    assert len(new - old) == counts.enrollments_added > 0
    assert len(old) == len(new) - counts.enrollments_added + counts.enrollments_removed
    changed_sections = [i for i in before["sections"] if before["sections"][i] != after["sections"][i]]
    assert len(changed_sections) == counts.sections_changed
    for endpoint in ("districts", "schools", "terms", "courses"):
        assert list(iter_stored(tmp_path / "day2", "v3.0", endpoint)) == list(
            iter_stored(layouts["sorted"], "v3.0", endpoint))
    assert json.loads((tmp_path / "day2" / "changes.json").read_text())["users_changed"] == counts.users_changed
    # the same changes as events would announce them: every edited user and changed section, in order
    with events_file(tmp_path / "day2", "v3.0").open(encoding="utf-8") as lines:
        announced = [Change(**json.loads(line)) for line in lines]
    assert announced == diff_events(before, after)
    assert len(announced) == counts.users_changed + counts.sections_changed
    assert derive_changes(layouts["sorted"], tmp_path / "again", rate=0.05, seed=3) == counts  # deterministic
