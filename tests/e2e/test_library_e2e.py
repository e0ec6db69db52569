"""A Clever Library district through real `airflow dags test` runs of its own sync DAG: two
connected teachers share a student, whose record is one; the student leaves one teacher
and stays active, leaves both and is archived, comes back and is restored; then one
teacher's token is revoked: that teacher is disconnected, the other still syncs, and
nothing of the disconnected teacher's view is archived (the default policy)."""

from __future__ import annotations

import pytest

from clever_devkit.simulator import CleverSimulator, DistrictSpec
from tests.e2e.conftest import make_airflow
from tests.helpers import (
    connect_library_teachers,
    library_teachers,
    library_view,
    load_records,
    without_student,
    write_records,
)

pytestmark = pytest.mark.e2e

DISTRICT_TOKEN = "e2e-library-district-token-never-used-1a2b"
TEACHER_TOKENS = ("e2e-library-teacher-a-token-9f8e", "e2e-library-teacher-b-token-7d6c")


@pytest.fixture
def library(airflow_home, warehouse_url, district_dir, tmp_path):
    sections = load_records(district_dir, "v3.0", "sections")
    a, b, shared = library_teachers(sections)
    spec = DistrictSpec("lib", DISTRICT_TOKEN, district_dir, teachers=dict(zip(TEACHER_TOKENS, (a, b), strict=True)))
    with CleverSimulator([spec], seed=5) as sim:
        airflow = make_airflow(airflow_home, warehouse_url, tmp_path, sim, {"lib": DISTRICT_TOKEN},
                               district_options={"integration": "library"})
        # The application's hand-over: a row per connected teacher, the token in an Airflow Variable.
        for teacher, token in zip((a, b), TEACHER_TOKENS, strict=True):
            airflow.env[f"AIRFLOW_VAR_CLEVER_TEACHER_ACCESS_TOKEN_{teacher.upper()}"] = token
        connect_library_teachers(warehouse_url, "lib", [a, b])
        yield airflow, sim, a, b, shared, sections


def users_state(airflow) -> dict[str, bool]:
    return dict(airflow.query("SELECT clever_id, is_archived FROM clever_marts.dim_users"))


def test_two_teachers_sharing_a_student_through_leaving_returning_and_a_revoked_token(library, district_dir):
    airflow, sim, a, b, shared, sections = library
    sections_a, students_a = library_view(sections, a)
    sections_b, students_b = library_view(sections, b)

    # Day 1: both views, each record once.
    log = airflow.sync("lib")
    for token in (DISTRICT_TOKEN, *TEACHER_TOKENS):
        assert token not in log
    state = users_state(airflow)
    assert set(state) == students_a | students_b | {a, b} and not any(state.values())
    assert airflow.scalar("SELECT count(*) FROM clever_marts.dim_users WHERE clever_id = %s", (shared,)) == 1
    assert {s for (s,) in airflow.query("SELECT clever_id FROM clever_marts.dim_sections")} == sections_a | sections_b
    assert airflow.scalar("SELECT count(*) FROM clever_marts.dim_schools") == 0  # a Library app reads none
    assert airflow.scalar("SELECT count(*) FROM clever_landing.quarantine") == 0

    # Day 2: the student leaves teacher a's classes but stays in b's: still active.
    write_records(district_dir, "v3.0", "sections", without_student(sections, shared, {a}))
    airflow.sync("lib")
    assert users_state(airflow)[shared] is False
    enrolled = dict(airflow.query("SELECT section_id, is_archived FROM clever_marts.fct_enrollments "
                                  "WHERE user_id = %s AND role = 'student'", (shared,)))
    assert {s for s, archived in enrolled.items() if archived} == {
        s["id"] for s in sections if s["id"] in sections_a and shared in (s.get("students") or [])}
    assert {s for s, archived in enrolled.items() if not archived}  # b's classes

    # Day 3: the student leaves b's classes too: archived.
    write_records(district_dir, "v3.0", "sections", without_student(sections, shared, {a, b}))
    airflow.sync("lib")
    assert users_state(airflow)[shared] is True
    assert {s for s, archived in users_state(airflow).items() if archived} == {shared}

    # Day 4: back in both teachers' classes: restored, the same record.
    write_records(district_dir, "v3.0", "sections", sections)
    airflow.sync("lib")
    state = users_state(airflow)
    assert state[shared] is False and not any(state.values())
    assert airflow.scalar("SELECT count(DISTINCT clever_id) FROM clever_snapshots.snap_clever__users "
                          "WHERE clever_id = %s", (shared,)) == 1

    # Day 5: teacher a revokes the application: a is disconnected, b still syncs, nothing of a's view is archived.
    sim.revoke_teacher(a)
    airflow.sync("lib")
    assert airflow.query("SELECT teacher_clever_id, status FROM clever_landing.library_teacher_status "
                         "ORDER BY 1") == sorted([(a, "disconnected"), (b, "connected")])
    assert not any(users_state(airflow).values())
    assert not airflow.scalar("SELECT count(*) FROM clever_marts.dim_sections WHERE is_archived")
    assert airflow.scalar("SELECT status FROM clever_landing.sync_runs ORDER BY sync_run_id DESC LIMIT 1") \
        == "completed"
