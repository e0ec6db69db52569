"""A Clever Library district through the pipeline's steps in one process: the union of two
connected teachers' views landed once per record and validated with the Library suites, a
teacher whose token Clever refuses disconnected without archiving their view, the
disconnect policy archiving only what that teacher alone saw, and a reconnect restoring it.
(tests/e2e/test_library_e2e.py runs a Library district's roster changes through Airflow.)"""

from __future__ import annotations

import psycopg
import pytest

from clever import steps
from clever.config import DistrictConfig
from clever.connections import CleverEndpoint, WarehouseTarget
from clever_devkit.simulator import CleverSimulator, DistrictSpec
from tests.helpers import connect_library_teachers, library_teachers, library_view, load_records

TOKENS = {"a": "library-teacher-a-token-3c4d", "b": "library-teacher-b-token-5e6f"}


@pytest.fixture
def story(district_dir, warehouse_url):
    sections = load_records(district_dir, "v3.0", "sections")
    a, b, shared = library_teachers(sections)
    spec = DistrictSpec("lib", "library-district-has-no-token-use", district_dir,
                        teachers={TOKENS["a"]: a, TOKENS["b"]: b})
    with CleverSimulator([spec], seed=3) as sim:
        connect_library_teachers(warehouse_url, "lib", [a, b])
        yield sim, a, b, shared, sections


def sync(warehouse_url: str, sim: CleverSimulator, teachers: dict[str, str], **district_options) -> dict:
    district = DistrictConfig(slug="lib", integration="library", endpoints=("districts", "users", "sections"),
                              page_size=5, http_max_attempts=2, http_backoff_max_seconds=0.1,
                              **{k: v for k, v in district_options.items() if k != "allow_mass_archive"})
    ctx = steps.SyncContext(target=WarehouseTarget.from_conninfo(warehouse_url), district=district,
                            params=steps.RunParams(allow_mass_archive=district_options.get("allow_mass_archive",
                                                                                           False)),
                            api=CleverEndpoint(sim.base_url, ""), teacher_tokens=teachers)
    done = steps.run_sync(ctx)
    return {"run": done.run_id, **done.results}


def query(url: str, text: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(text, params).fetchall()


def state(url: str, dim: str) -> dict[str, bool]:
    return dict(query(url, f"SELECT clever_id, is_archived FROM clever_marts.dim_{dim} WHERE district_slug = 'lib'"))


def test_two_teachers_views_land_once_and_a_refused_teacher_keeps_their_view_until_the_policy(story,
                                                                                             warehouse_url):
    sim, a, b, shared, sections = story
    tokens = {a: TOKENS["a"], b: TOKENS["b"]}
    sections_a, students_a = library_view(sections, a)
    sections_b, students_b = library_view(sections, b)

    first = sync(warehouse_url, sim, tokens)
    assert sorted(first["extract"]["teachers_read"]) == sorted([a, b])
    run = first["run"]
    # Each record once, whichever views held it: the shared student, the co-taught section.
    users = query(warehouse_url, "SELECT clever_id FROM clever_landing.users WHERE sync_run_id = %s", (run,))
    assert sorted(u for (u,) in users) == sorted(students_a | students_b | {a, b})
    landed_sections = [s for (s,) in query(warehouse_url, "SELECT clever_id FROM clever_landing.sections "
                                                          "WHERE sync_run_id = %s", (run,))]
    assert sorted(landed_sections) == sorted(sections_a | sections_b)
    assert query(warehouse_url, "SELECT count(*) FROM clever_landing.districts WHERE sync_run_id = %s", (run,)) \
        == [(1,)]
    assert query(warehouse_url, "SELECT endpoint, row_count FROM clever_landing.endpoint_runs "
                                "WHERE sync_run_id = %s ORDER BY endpoint", (run,)) == [
        ("districts", 1), ("sections", len(sections_a | sections_b)), ("users", len(students_a | students_b) + 2)]
    assert sorted(t for (t,) in query(
        warehouse_url, "SELECT teacher_clever_id FROM clever_landing.library_views "
                       "WHERE sync_run_id = %s AND endpoint = 'users' AND clever_id = %s", (run, shared))) \
        == sorted([a, b])
    # Validated with the Library suites: nothing quarantined for what Clever does not send a Library app.
    assert query(warehouse_url, "SELECT count(*) FROM clever_landing.quarantine WHERE sync_run_id = %s", (run,)) \
        == [(0,)]
    suites = {s for (s,) in query(warehouse_url, "SELECT DISTINCT description FROM clever_landing.validation_results "
                                                 "WHERE sync_run_id = %s AND endpoint = 'users'", (run,))}
    assert "a student's last name is only an initial (what Clever sends a Library app)" in suites
    users_state = state(warehouse_url, "users")
    assert set(users_state) == students_a | students_b | {a, b} and not any(users_state.values())
    assert query(warehouse_url, "SELECT count(*) FROM clever_marts.dim_users WHERE clever_id = %s", (shared,)) \
        == [(1,)]
    (last_name,) = query(warehouse_url, "SELECT last_name FROM clever_marts.dim_users WHERE clever_id = %s",
                         (shared,))[0]
    assert len(last_name) == 1  # the last initial only
    assert set(state(warehouse_url, "sections")) == sections_a | sections_b
    assert len(state(warehouse_url, "districts")) == 1
    assert query(warehouse_url, "SELECT count(*) FROM clever_marts.fct_enrollments "
                                "WHERE district_slug = 'lib' AND user_id = %s AND role = 'student'", (shared,))[0][0] \
        == sum(shared in (s.get("students") or []) for s in sections if s["id"] in sections_a | sections_b)

    # Teacher a revokes the application: a is disconnected, b still syncs, nothing of a's view is archived.
    sim.revoke_teacher(a)
    second = sync(warehouse_url, sim, tokens)
    assert second["extract"]["teachers_read"] == [b] and second["extract"]["teachers_kept"] == [a]
    assert second["extract"]["teacher_changes"] == [f"{a}: disconnected (Clever refused the teacher's token "
                                                    "(HTTP 401))"]
    assert query(warehouse_url, "SELECT teacher_clever_id, status FROM clever_landing.library_teacher_status "
                                "ORDER BY 1") == sorted([(a, "disconnected"), (b, "connected")])
    assert not any(state(warehouse_url, "users").values())
    assert not any(state(warehouse_url, "sections").values())

    # The policy archives, after its days, what only a's view held; b's students and the co-taught section stay.
    third = sync(warehouse_url, sim, tokens, library_teacher_archive_after_days=0.0, allow_mass_archive=True)
    assert third["extract"]["teachers_archived"] == [a]
    users_state, sections_state = state(warehouse_url, "users"), state(warehouse_url, "sections")
    assert {u for u, archived in users_state.items() if archived} == (students_a - students_b) | {a}
    assert {s for s, archived in sections_state.items() if archived} == sections_a - sections_b
    assert users_state[shared] is False

    # a connects again: their view is read and everything archived comes back.
    sim.reset()
    fourth = sync(warehouse_url, sim, tokens, library_teacher_archive_after_days=0.0)
    assert fourth["extract"]["teacher_changes"] == [f"{a}: reconnected"]
    assert not any(state(warehouse_url, "users").values())
    assert not any(state(warehouse_url, "sections").values())
    assert query(warehouse_url, "SELECT status, archived_at FROM clever_landing.library_teacher_status "
                                "WHERE teacher_clever_id = %s", (a,)) == [("connected", None)]


def test_a_teacher_whose_read_fails_otherwise_fails_the_extraction_and_archives_nothing(story, warehouse_url):
    sim, a, b, _, _ = story
    tokens = {a: TOKENS["a"], b: TOKENS["b"]}
    sync(warehouse_url, sim, tokens)
    sim.set_faults(fail_endpoint="users", fail_after_pages=0)
    with pytest.raises(Exception, match="Library teacher"):
        sync(warehouse_url, sim, tokens)
    assert query(warehouse_url, "SELECT status FROM clever_landing.sync_runs ORDER BY sync_run_id") \
        == [("completed",), ("failed",)]
    assert not any(state(warehouse_url, "users").values())
    # neither teacher is taken for disconnected by a server error
    assert query(warehouse_url, "SELECT DISTINCT status FROM clever_landing.library_teacher_status") \
        == [("connected",)]


def test_a_teacher_with_no_token_or_another_users_token_is_disconnected_not_read(story, warehouse_url):
    sim, a, b, _, _ = story
    result = sync(warehouse_url, sim, {a: TOKENS["b"]})  # a's stored token is b's; b has none stored
    assert result["extract"]["teachers_read"] == []
    reasons = dict(query(warehouse_url, "SELECT teacher_clever_id, reason FROM clever_landing.library_teacher_status"))
    assert "belongs to another user" in reasons[a]
    assert "no token stored" in reasons[b] and "clever_teacher_access_token_" + b in reasons[b]
    assert TOKENS["b"] not in " ".join(reasons.values())



def test_a_teacher_of_another_clever_district_is_refused_not_landed(story, warehouse_url):
    sim, a, b, _, _ = story
    district = DistrictConfig(slug="lib", integration="library", endpoints=("districts", "users", "sections"),
                              clever_district_id="0" * 24, page_size=5)  # not the teachers' district
    ctx = steps.SyncContext(target=WarehouseTarget.from_conninfo(warehouse_url), district=district,
                            api=CleverEndpoint(sim.base_url, ""), teacher_tokens={a: TOKENS["a"], b: TOKENS["b"]})
    run_id = steps.run_step(ctx, "start_run")
    assert steps.run_step(ctx.for_run(run_id), "extract")["teachers_read"] == []
    reasons = dict(query(warehouse_url, "SELECT teacher_clever_id, reason FROM clever_landing.library_teacher_status"))
    assert all("not this Library district's (" + "0" * 24 + ")" in reasons[t] for t in (a, b))
    assert query(warehouse_url, "SELECT count(*) FROM clever_landing.users WHERE sync_run_id = %s", (run_id,)) == [(0,)]


def test_a_library_run_asked_for_what_teachers_cannot_read_fails_and_archives_nothing(story, warehouse_url):
    sim, a, b, _, _ = story
    district = DistrictConfig(slug="lib", integration="library")  # the Secure Sync endpoints, by mistake
    ctx = steps.SyncContext(target=WarehouseTarget.from_conninfo(warehouse_url), district=district,
                            params=steps.RunParams(endpoints=("users", "schools")),
                            api=CleverEndpoint(sim.base_url, ""), teacher_tokens={a: TOKENS["a"], b: TOKENS["b"]})
    with pytest.raises(Exception, match="cannot read schools"):
        steps.run_sync(ctx, skip=frozenset({"validate"}))
    assert query(warehouse_url, "SELECT count(*) FROM clever_landing.approved_extractions") == [(0,)]
