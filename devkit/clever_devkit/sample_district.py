"""Deterministic sample Clever district: "Certification ISD", and scaled copies of it.

``python -m clever_devkit.sample_district --out DIR [--students N] [--seed S] [--district-name NAME]``
writes ``DIR/v3.0/*.json`` and ``DIR/v3.1/*.json`` (one JSON array of records per
endpoint, shaped as the Clever OpenAPI definitions) plus ``DIR/README.md``, which lists
every deliberate edge case with its Clever ids. The simulator serves such a directory.

``--integration sso`` writes what a District SSO app receives from such a district
instead (clever.integrations): ``districts`` and ``users`` only, each user cut down to its
Clever ID, district, name, email (some have none) and which roles it has; the simulator
serves it with an SSO token's scope (``--integration SLUG=sso``). The shipped one is
``sample_data/sso_district`` (see ``SSO_SAMPLE_ARGS``).

The same command always writes byte-identical files: ids are hashes of
``<seed>:<kind>:<key>``, timestamps are fixed, JSON is written with sorted keys.

Structure (the default is 112 students; ``--students N`` scales it, N >= 112):

* students are grouped into cohorts of ``clamp(N // 14, 8, 28)``; cohort ``c`` is in
  grade-cycle position ``c % 14``: position 0 enrols only in 2026-27 (kindergarten),
  13 only in 2025-26 (graduated seniors), 1..12 in both years, so some cohorts move
  from elementary to middle (grade 5 -> 6) and middle to high school (8 -> 9);
* each cohort-year has 3 sections (ELA full year, science in fall, social studies in
  spring): sections ~ N/5, about 5.6 section enrolments per student;
* schools = max(5, N // 700) in a repeating elementary, elementary, middle, high,
  online-academy pattern; teachers = max(12, round(N / 17)); staff = 2 per school + 1;
  one contact per 10 students; one superintendent.

Every record is computed from its index alone (no district held in memory), so the
generators below can stream millions of records.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from clever.catalog import API_VERSIONS
from clever.integrations import DEFAULT_INTEGRATION, INTEGRATION_NAMES, INTEGRATIONS

Record = dict[str, Any]

DEFAULT_STUDENTS = 112
MIN_STUDENTS = 112  # 14 cohorts of 8: every grade position and edge case exists
DEFAULT_DISTRICT_NAME = "Certification ISD"

GRADES = ("Kindergarten", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12")
GRADE_CYCLE = 14  # 13 grades plus the graduated class still on last year's rosters
SECTIONS_PER_COHORT_YEAR = 3
# slot -> (Clever subject, course number prefix, course title); slot also picks the term
SUBJECTS = (
    ("english/language arts", "ELA", "English Language Arts"),
    ("science", "SCI", "Science"),
    ("social studies", "SS", "Social Studies"),
)


@dataclass(frozen=True)
class SchoolYear:
    label: str
    start: date
    fall_end: date
    spring_start: date
    end: date

    def term_dates(self, slot: int) -> tuple[date, date]:
        """Full year, fall semester or spring semester, by section slot."""
        return ((self.start, self.end), (self.start, self.fall_end), (self.spring_start, self.end))[slot]


YEARS = (
    SchoolYear("2025-26", date(2025, 8, 13), date(2025, 12, 19), date(2026, 1, 6), date(2026, 5, 29)),
    SchoolYear("2026-27", date(2026, 8, 12), date(2026, 12, 18), date(2027, 1, 5), date(2027, 5, 28)),
)
TERM_NAMES = ("Full Year", "Fall Semester", "Spring Semester")

MODIFIED_BASE = datetime(2026, 8, 3, 6, 0, tzinfo=UTC)
LAST_SYNC = "2026-08-10T06:00:00.000Z"

# School kinds repeat in this pattern; "V" is the online academy (sparse record, K-12).
SCHOOL_PATTERN = "EEMHV"
SCHOOL_NAMES = {
    "E": ("Maple Grove Elementary", "Riverside Elementary"),
    "M": ("Lone Star Middle School",),
    "H": ("Bluebonnet High School",),
    "V": ("Certification Online Academy",),
}
SCHOOL_GRADES = {"E": ("Kindergarten", "5"), "M": ("6", "8"), "H": ("9", "12")}

FIRST_NAMES = (
    "Ava", "Liam", "Sofia", "Noah", "Maya", "Ethan", "Aaliyah", "Mateo", "Chloe", "Jamal", "Priya",
    "Lucas", "Hannah", "Diego", "Grace", "Omar", "Lily", "Kai", "Nora", "Elijah", "Amara", "Leo",
    "Isabella", "Caleb", "Fatima", "Hiro", "Camila", "Tyler", "Zara", "Andre",
)
LAST_NAMES = (
    "Johnson", "Nguyen", "Garcia", "Patel", "Williams", "Kim", "Brown", "Hernandez", "Okafor",
    "Miller", "Rossi", "Chen", "Davis", "Lopez", "Wilson", "Anderson", "Singh", "Thompson",
    "Martinez", "Clark", "Tanaka", "Moreno", "Walker", "Ibrahim", "Kowalski",
)
RACES = ("Caucasian", "Asian", "Black or African American", "American Indian",
         "Hawaiian or Other Pacific Islander", "Two or More Races", "Unknown")
HOME_LANGUAGES = (("English", "eng"), ("Spanish", "spa"), ("Vietnamese", "vie"), ("Arabic", "ara"),
                  ("Chinese", "zho"), ("Russian", "rus"), ("Korean", "kor"))
TEACHER_TITLES = ("Teacher", "Lead Teacher", "Special Education Teacher", "Interventionist")
STAFF_TITLES = (("Assistant Principal", "Administration"), ("Counselor", "Student Services"))

# -- deliberate edge cases (indices into the generated people; all exist for N >= 112) --
TEACHER_ADMIN = 0  # v3.0: two users (teacher, district admin); v3.1: one with both roles
TWO_SCHOOL_TEACHER = 1  # schools 1 and 0; co-teaches the team-taught section
BARE_TEACHER = 2  # every optional field absent
HOSTILE_TITLE_TEACHER = 3
BARE_STUDENT, NULL_STUDENT, EMPTY_STUDENT = 7, 8, 9  # optional fields absent / null / ""
NAMED_STUDENTS: dict[int, tuple[str, str | None, str]] = {
    1: ("Seán", None, "O'Brien"),
    2: ("José", "Ángel", "Núñez"),
    3: ("Zoë", None, "Smith-Jones"),
    4: ("Mary-Kate", None, "D'Angelo"),
    5: ("小龙", None, "李"),
    6: ("Алексей", "Иванович", "Смирнов"),
    10: ("محمد", None, "العلي"),
    11: ("민준", None, "김"),
    12: ("Ελένη", None, "Παπαδοπούλου"),
}
NAMED_TEACHERS: dict[int, tuple[str, str | None, str]] = {
    TEACHER_ADMIN: ("Dana", "Marie", "Whitfield"),
    TWO_SCHOOL_TEACHER: ("Renée", None, "Baptiste-Okafor"),
}
SUPERINTENDENT_NAME = ("Alejandra", None, "Ruiz")
TEACHER_ADMIN_TITLE = "Director of Curriculum"
HOSTILE_SECTION_NAME = "Robert'); DROP TABLE students;-- \"quoted\" back\\slash\ttab 🎓📚"
HOSTILE_TITLE = 'Dept. "Head" \\ Lead\t<script>alert(1)</script> 👩🏽‍🏫'
TEAM_SECTION = (0, 1, 0)  # (cohort, year, slot): kindergarten ELA 2026-27 at school 0
HOSTILE_SECTION = (7, 1, 1)
ONLINE_SECTION = (10, 1, 0)  # online-academy section the dual-enrolled student also takes
DUAL_ENROLLED_COHORT = 11  # a high-school cohort
SECTIONLESS_STUDENT_EVERY = 50  # students i % 50 == 49 are in no section
IDLE_TEACHER_EVERY = 10  # teachers t % 10 == 9 teach no section (see Plan.is_idle_teacher)


@dataclass(frozen=True)
class EdgeCase:
    key: str
    description: str
    examples: tuple[tuple[str, str], ...]  # (Clever id, label)


@dataclass(frozen=True)
class Plan:
    """Sizes and index arithmetic of one generated district; records derive from it."""

    students: int = DEFAULT_STUDENTS
    seed: int = 0
    district_name: str = DEFAULT_DISTRICT_NAME

    def __post_init__(self) -> None:
        if self.students < MIN_STUDENTS:
            raise ValueError(f"students must be >= {MIN_STUDENTS} so every edge case exists")

    # -- sizes ------------------------------------------------------------------------
    @property
    def cohort_size(self) -> int:
        return min(28, max(8, self.students // GRADE_CYCLE))

    @property
    def cohorts(self) -> int:
        return -(-self.students // self.cohort_size)

    @property
    def schools(self) -> int:
        return max(5, self.students // 700)

    @property
    def teachers(self) -> int:
        return max(12, round(self.students / 17))

    @property
    def staff(self) -> int:
        return 2 * self.schools + 1

    @property
    def contacts(self) -> int:
        return -(-self.students // 10)

    # -- ids and hashing ----------------------------------------------------------------
    def id(self, kind: str, key: object) -> str:
        """A Clever-style id (24 lowercase hex chars), stable for (seed, kind, key)."""
        return hashlib.sha1(f"{self.seed}:{kind}:{key}".encode()).hexdigest()[:24]

    def pick(self, kind: str, key: object, choices: tuple[Any, ...]) -> Any:
        """A deterministic pseudo-random choice, independent of generation order."""
        return choices[self.number(kind, key) % len(choices)]

    def number(self, kind: str, key: object) -> int:
        return int(hashlib.sha1(f"{self.seed}:n:{kind}:{key}".encode()).hexdigest()[:12], 16)

    @property
    def district_id(self) -> str:
        return self.id("district", 0)

    @property
    def domain(self) -> str:
        return f"{_slug(self.district_name, '-') or 'district'}.example"

    # -- schools ------------------------------------------------------------------------
    @cached_property
    def schools_by_kind(self) -> dict[str, list[int]]:
        kinds: dict[str, list[int]] = {kind: [] for kind in SCHOOL_PATTERN}
        for s in range(self.schools):
            kinds[school_kind(s)].append(s)
        return kinds

    # -- cohorts ------------------------------------------------------------------------
    def cohort_years(self, c: int) -> tuple[int, ...]:
        return tuple(y for y in range(len(YEARS)) if 0 <= self.cohort_grade(c, y) < len(GRADES))

    @staticmethod
    def cohort_grade(c: int, y: int) -> int:
        """Index into GRADES of cohort ``c`` in school year ``y`` (may be out of range)."""
        return c % GRADE_CYCLE - 1 + y

    def cohort_school(self, c: int, y: int) -> int:
        """Grade decides elementary/middle/high; cohorts c % 7 == 3 attend the online academy."""
        if c % 7 == 3:
            pool = self.schools_by_kind["V"]
        else:
            grade = self.cohort_grade(c, y)
            pool = self.schools_by_kind["E" if grade <= 5 else "M" if grade <= 8 else "H"]
        return pool[c % len(pool)]

    def cohort_members(self, c: int) -> range:
        return range(c * self.cohort_size, min((c + 1) * self.cohort_size, self.students))

    def section_students(self, key: tuple[int, int, int]) -> list[int]:
        c = key[0]
        students = [i for i in self.cohort_members(c) if not is_sectionless(i)]
        if key == ONLINE_SECTION:
            students.append(self.dual_enrolled_student)
        return students

    @property
    def dual_enrolled_student(self) -> int:
        return next(i for i in self.cohort_members(DUAL_ENROLLED_COHORT) if not is_sectionless(i))

    def student_years(self, i: int) -> list[tuple[int, int]]:
        """(year, school) for each year the student's cohort is enrolled."""
        c = i // self.cohort_size
        return [(y, self.cohort_school(c, y)) for y in self.cohort_years(c)]

    # -- teachers -----------------------------------------------------------------------
    def teacher_school(self, t: int) -> int:
        return t % self.schools

    @cached_property
    def active_teachers(self) -> dict[int, list[int]]:
        by_school: dict[int, list[int]] = {s: [] for s in range(self.schools)}
        for t in range(self.teachers):
            if not self.is_idle_teacher(t):
                by_school[self.teacher_school(t)].append(t)
        return by_school

    def is_idle_teacher(self, t: int) -> bool:
        """Every tenth teacher teaches nothing, except a school's first (so none is left empty)."""
        return t % IDLE_TEACHER_EVERY == IDLE_TEACHER_EVERY - 1 and t >= self.schools

    def section_teachers(self, key: tuple[int, int, int]) -> list[int]:
        """Primary teacher first; the team-taught section adds two colleagues and teacher 1."""
        c, y, slot = key
        pool = self.active_teachers[self.cohort_school(c, y)]
        primary = pool[(c + 3 * y + slot) % len(pool)]
        if key != TEAM_SECTION:
            return [primary]
        return [primary, *[t for t in pool if t != primary][:2], TWO_SCHOOL_TEACHER]

    def teacher_schools(self, t: int) -> list[int]:
        own = self.teacher_school(t)
        return [own, self.cohort_school(*TEAM_SECTION[:2])] if t == TWO_SCHOOL_TEACHER else [own]

    # -- sections -------------------------------------------------------------------------
    def section_keys(self) -> Iterator[tuple[int, int, int]]:
        for c in range(self.cohorts):
            for y in self.cohort_years(c):
                for slot in range(SECTIONS_PER_COHORT_YEAR):
                    yield (c, y, slot)


def school_kind(s: int) -> str:
    return SCHOOL_PATTERN[s % len(SCHOOL_PATTERN)]


def is_sectionless(i: int) -> bool:
    return i % SECTIONLESS_STUDENT_EVERY == SECTIONLESS_STUDENT_EVERY - 1


# -- small helpers ------------------------------------------------------------------------
def _slug(text: str, sep: str = "") -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = "".join(ch if ch.isalnum() else " " for ch in ascii_text).split()
    return sep.join(words)


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _stamps(plan: Plan, kind: str, key: object, created_on: date) -> dict[str, str]:
    """created some weeks before ``created_on``; last_modified in the week before the snapshot."""
    n = plan.number(f"stamp-{kind}", key)
    created = datetime.combine(created_on, datetime.min.time(), UTC) - timedelta(days=45)
    return {
        "created": _timestamp(created + timedelta(seconds=n % (30 * 86400))),
        "last_modified": _timestamp(MODIFIED_BASE + timedelta(seconds=(n >> 24) % (5 * 86400))),
    }


def _name(first: str, middle: str | None, last: str) -> dict[str, str]:
    name = {"first": first, "last": last}
    if middle is not None:
        name["middle"] = middle
    return name


def _pool_name(plan: Plan, kind: str, n: int, with_middle: bool) -> tuple[str, str | None, str]:
    first = plan.pick(f"{kind}-first", n, FIRST_NAMES)
    middle = plan.pick(f"{kind}-middle", n, FIRST_NAMES)[0] if with_middle else None
    return first, middle, plan.pick(f"{kind}-last", n, LAST_NAMES)


# -- endpoint generators -----------------------------------------------------------------------
def iter_districts(plan: Plan, version: str) -> Iterator[Record]:
    first, _, last = SUPERINTENDENT_NAME
    district: Record = {
        "id": plan.district_id,
        "name": plan.district_name,
        "nces_id": "4812345",
        "mdr_number": "04412345",
        "sis_type": "sftp",
        "state": "success",
        "last_sync": LAST_SYNC,
        "launch_date": "2025-07-15",
        "login_methods": ["Clever Badges", "Google"],
        "portal_url": f"https://clever.com/in/{_slug(plan.district_name, '-')}",
        "district_contact": {
            "id": plan.id("district_admin", 0),
            "district": plan.district_id,
            "email": f"{_slug(first)}.{_slug(last)}@{plan.domain}",
            "name": {"first": first, "last": last},
            "title": "Superintendent",
        },
    }
    if version == "v3.1":
        district |= {"lms_state": "success", "lms_type": "canvas", "last_attendance_sync": None}
    yield district


def iter_schools(plan: Plan, version: str) -> Iterator[Record]:
    for s in range(plan.schools):
        kind = school_kind(s)
        names = SCHOOL_NAMES[kind]
        suffix = f" {s // len(SCHOOL_PATTERN) + 1}" if s >= len(SCHOOL_PATTERN) else ""
        school: Record = {
            "id": plan.id("school", s),
            "district": plan.district_id,
            "name": names[s % len(SCHOOL_PATTERN) % len(names)] + suffix,
            "sis_id": f"SCH{s + 1:04d}",
            "school_number": f"{101 + s}",
            **_stamps(plan, "school", s, YEARS[0].start),
        }
        if kind != "V":  # the online academy's record carries only guaranteed fields
            low, high = SCHOOL_GRADES[kind]
            school |= {
                "nces_id": f"4812345{s:05d}",
                "state_id": f"227901{s:03d}",
                "mdr_number": f"0441{s:04d}",
                "phone": f"(512) 555-{1000 + s:04d}",
                "low_grade": low,
                "high_grade": high,
                "location": {"address": f"{200 + 10 * s} School Rd", "city": "Austin", "state": "TX",
                             "zip": "78701", "lat": "30.2672", "lon": "-97.7431"},
                "principal": {"name": " ".join(_pool_name(plan, "principal", s, False)[::2]),
                              "email": f"principal{s + 1}@{plan.domain}"},
            }
        yield school


def iter_terms(plan: Plan, version: str) -> Iterator[Record]:
    for y, year in enumerate(YEARS):
        for slot, term_name in enumerate(TERM_NAMES):
            start, end = year.term_dates(slot)
            yield {
                "id": plan.id("term", (y, slot)),
                "district": plan.district_id,
                "name": f"{year.label} {term_name}",
                "start_date": start.isoformat(),
                "end_date": end.isoformat(),
            }


def course_id(plan: Plan, grade: int, slot: int) -> str:
    return plan.id("course", (grade, slot))


def iter_courses(plan: Plan, version: str) -> Iterator[Record]:
    for grade, grade_name in enumerate(GRADES):
        label = "K" if grade == 0 else f"{grade:02d}"
        for slot, (_, prefix, title) in enumerate(SUBJECTS):
            course: Record = {"id": course_id(plan, grade, slot), "district": plan.district_id,
                              "name": f"{'Kindergarten' if grade == 0 else 'Grade ' + grade_name} {title}",
                              "number": f"{prefix}-{label}"}
            if (grade, slot) == (0, 1):
                del course["number"]  # optional field absent
            if (grade, slot) == (12, 2):
                course["name"] = None  # optional field null
            yield course


def section_id(plan: Plan, key: object) -> str:
    return plan.id("section", key)


def iter_sections(plan: Plan, version: str) -> Iterator[Record]:
    for key in plan.section_keys():
        yield _cohort_section(plan, key, version)
    yield from _extra_sections(plan, version)


def _cohort_section(plan: Plan, key: tuple[int, int, int], version: str) -> Record:
    c, y, slot = key
    grade = plan.cohort_grade(c, y)
    year = YEARS[y]
    subject, prefix, title = SUBJECTS[slot]
    grade_label = "Kindergarten" if grade == 0 else f"Grade {GRADES[grade]}"
    teachers = [plan.id("teacher", t) for t in plan.section_teachers(key)]
    section: Record = {
        "id": section_id(plan, key),
        "district": plan.district_id,
        "school": plan.id("school", plan.cohort_school(c, y)),
        "name": f"{grade_label} {title} {c + 1} ({year.label})",
        "sis_id": f"SEC-{year.label}-{c + 1:05d}-{prefix}",
        "section_number": f"{c + 1:05d}-{slot + 1}",
        "period": str(slot + 1),
        "subject": subject,
        "grade": GRADES[grade],
        "course": course_id(plan, grade, slot),
        "term_id": plan.id("term", (y, slot)),
        "teacher": teachers[0],
        "teachers": teachers,
        "students": [plan.id("student", i) for i in plan.section_students(key)],
        **_stamps(plan, "section", key, year.start),
    }
    if key == HOSTILE_SECTION:
        section["name"] = HOSTILE_SECTION_NAME
    if version == "v3.1" and c % 3 == 0:
        section["lms_status"] = {"synced_in_lms": slot != 2}
    return section


def _extra_sections(plan: Plan, version: str) -> Iterator[Record]:
    """An advisory with no term and no course, and a section nobody is enrolled in."""
    advisory_school = plan.cohort_school(1, 1)
    advisory_students = [i for i in plan.cohort_members(1) if not is_sectionless(i)][:5]
    advisory_teacher = plan.id("teacher", plan.active_teachers[advisory_school][0])
    yield {
        "id": section_id(plan, "advisory"),
        "district": plan.district_id,
        "school": plan.id("school", advisory_school),
        "name": "Advisory (unscheduled)",
        "sis_id": "SEC-ADVISORY-1",
        "subject": "homeroom/advisory",
        "teacher": advisory_teacher,
        "teachers": [advisory_teacher],
        "students": [plan.id("student", i) for i in advisory_students],
        **_stamps(plan, "section", "advisory", YEARS[1].start),
    }
    middle = plan.schools_by_kind["M"][0]
    empty_teacher = plan.id("teacher", plan.active_teachers[middle][0])
    empty: Record = {
        "id": section_id(plan, "empty"),
        "district": plan.district_id,
        "school": plan.id("school", middle),
        "name": "Independent Study (no roster yet)",
        "sis_id": "SEC-EMPTY-1",
        "section_number": "IS-1",
        "period": "8",
        "subject": "other",
        "grade": "7",
        "course": course_id(plan, 7, 0),
        "term_id": plan.id("term", (1, 0)),
        "teacher": empty_teacher,
        "teachers": [empty_teacher],
        "students": [],
        **_stamps(plan, "section", "empty", YEARS[1].start),
    }
    if version == "v3.1":
        empty["lms_status"] = None
    yield empty


def iter_users(plan: Plan, version: str) -> Iterator[Record]:
    yield _superintendent(plan)
    if version == "v3.0":
        yield _teacher_admin_v30(plan)
    for t in range(plan.teachers):
        yield _teacher(plan, t, version)
    for m in range(plan.staff):
        yield _staff(plan, m)
    for i in range(plan.students):
        yield _student(plan, i, version)
    for q in range(plan.contacts):
        yield _contact(plan, q)


def _person(plan: Plan, kind: str, n: int, name: tuple[str, str | None, str], email: str | None,
            created_on: date) -> Record:
    user: Record = {"id": plan.id(kind, n), "district": plan.district_id, "name": _name(*name),
                    **_stamps(plan, kind, n, created_on)}
    if email is not None:
        user["email"] = email
    return user


def _superintendent(plan: Plan) -> Record:
    first, _, last = SUPERINTENDENT_NAME
    user = _person(plan, "district_admin", 0, SUPERINTENDENT_NAME,
                   f"{_slug(first)}.{_slug(last)}@{plan.domain}", YEARS[0].start)
    user["roles"] = {"district_admin": {"title": "Superintendent"}}
    return user


def _teacher_email(plan: Plan, t: int, name: tuple[str, str | None, str]) -> str:
    return f"{_slug(name[0])[:1]}{_slug(name[2])}{t}@{plan.domain}"


def _teacher_admin_v30(plan: Plan) -> Record:
    """v3.0 keeps a district admin who also teaches as a second user with its own id."""
    name = NAMED_TEACHERS[TEACHER_ADMIN]
    user = _person(plan, "district_admin", 1, name, _teacher_email(plan, TEACHER_ADMIN, name), YEARS[0].start)
    user["roles"] = {"district_admin": {"title": TEACHER_ADMIN_TITLE}}
    return user


def _teacher(plan: Plan, t: int, version: str) -> Record:
    name = NAMED_TEACHERS.get(t) or _pool_name(plan, "teacher", t, with_middle=t % 3 == 0)
    schools = [plan.id("school", s) for s in plan.teacher_schools(t)]
    email = None if t == BARE_TEACHER else _teacher_email(plan, t, name)
    user = _person(plan, "teacher", t, name, email, YEARS[0].start)
    role: Record = {"school": schools[0], "schools": schools, "sis_id": f"T{1000 + t}"}
    if t != BARE_TEACHER:
        role |= {
            "credentials": {"district_username": f"t{1000 + t}"},
            "state_id": f"TX-T{4000000 + t}",
            "teacher_number": f"{5000 + t}",
            "title": HOSTILE_TITLE if t == HOSTILE_TITLE_TEACHER else plan.pick("title", t, TEACHER_TITLES),
        }
    user["roles"] = {"teacher": role}
    if version == "v3.1" and t == TEACHER_ADMIN:
        user["roles"]["district_admin"] = {"title": TEACHER_ADMIN_TITLE}
    return user


def _staff(plan: Plan, m: int) -> Record:
    """Two per school (assistant principal, counselor), then one who covers every school."""
    name = _pool_name(plan, "staff", m, with_middle=False)
    if m < 2 * plan.schools:
        schools = [plan.id("school", m % plan.schools)]
        title, department = STAFF_TITLES[m // plan.schools]
    else:
        schools = [plan.id("school", s) for s in range(plan.schools)]
        title, department = "Instructional Technology Coordinator", "Technology"
    user = _person(plan, "staff", m, name, f"staff{m + 1}@{plan.domain}", YEARS[0].start)
    user["roles"] = {"staff": {"credentials": {"district_username": f"staff{m + 1}"}, "department": department,
                               "schools": schools, "staff_id": f"ST{2000 + m}", "title": title}}
    return user


def _enrollment(plan: Plan, y: int, school: int) -> Record:
    return {"school": plan.id("school", school), "start_date": YEARS[y].start.isoformat(),
            "end_date": YEARS[y].end.isoformat()}


def _student(plan: Plan, i: int, version: str) -> Record:
    years = plan.student_years(i)
    current_year = years[-1][0]
    grade = plan.cohort_grade(i // plan.cohort_size, current_year)
    enrollments = [_enrollment(plan, y, s) for y, s in reversed(years)]
    school_indices = list(dict.fromkeys(s for _, s in reversed(years)))
    if i == plan.dual_enrolled_student:
        online = plan.cohort_school(*ONLINE_SECTION[:2])
        school_indices.append(online)
        enrollments.append(_enrollment(plan, ONLINE_SECTION[1], online))
    schools = [plan.id("school", s) for s in school_indices]
    name = NAMED_STUDENTS.get(i) or _pool_name(plan, "student", i, with_middle=i % 3 == 0)
    sis_id = f"S{100000 + i}"
    user = _person(plan, "student", i, name, f"{sis_id.lower()}@students.{plan.domain}", YEARS[years[0][0]].start)

    n = plan.number("student", i)
    born = n % 12 + 1
    school_year = YEARS[current_year].start.year
    role: Record = {
        "school": schools[0],
        "schools": schools,
        "enrollments": enrollments,
        "sis_id": sis_id,
        "state_id": f"TX{900000000 + i}",
        "student_number": f"{200000 + i}",
        "credentials": {"district_username": sis_id.lower()},
        "grade": GRADES[grade],
        "graduation_year": str(school_year + 13 - grade),
        "dob": f"{born}/{(n >> 8) % 28 + 1}/{school_year - 6 - grade + (born < 9)}",
        "gender": plan.pick("gender", i, ("F", "M", "F", "M", "X")),
        "race": plan.pick("race", i, RACES),
        "hispanic_ethnicity": plan.pick("hispanic", i, ("Y", "N", "N")),
        "ell_status": plan.pick("ell", i, ("Y", "N", "N", "N")),
    }
    if i % 5 == 0:
        role["location"] = {"address": f"{100 + i % 900} Oak St", "city": "Austin", "state": "TX", "zip": "78701"}
    if version == "v3.1" and i % 4 == 0:
        role |= _v31_demographics(plan, i)
    user["roles"] = {"student": role}
    blank_mode = {BARE_STUDENT: "absent", NULL_STUDENT: "null", EMPTY_STUDENT: "empty"}.get(i)
    if blank_mode:
        _blank_optional(user, version, blank_mode)
    return user


def _v31_demographics(plan: Plan, i: int) -> Record:
    language, code = plan.pick("language", i, HOME_LANGUAGES)
    disabled = i % 12 == 0
    extra: Record = {
        "frl_status": plan.pick("frl", i, ("Free", "Reduced", "Paid", "Other")),
        "gifted_status": plan.pick("gifted", i, ("Y", "N", "N")),
        "home_language": language,
        "home_language_code": code,
        "iep_status": "Y" if disabled else "N",
        "section_504_status": plan.pick("504", i, ("Y", "N", "N", "N")),
        "disability": ({"disability_status": "Y", "disability_type": "Specific learning disability",
                        "disability_code": "sld"} if disabled else {"disability_status": "N"}),
    }
    if i % 8 == 0:
        extra["preferred_name"] = {"first": plan.pick("nickname", i, ("Sam", "Jo", "Alex", "Max"))}
    return extra


# Optional (not guaranteed) student fields, by API version.
STUDENT_OPTIONAL = ("credentials", "dob", "ell_status", "gender", "grade", "graduation_year",
                    "hispanic_ethnicity", "location", "race", "state_id", "student_number")
STUDENT_OPTIONAL_V31 = ("disability", "frl_status", "gifted_status", "home_language", "home_language_code",
                        "iep_status", "preferred_name", "section_504_status")
# The null variant: objects that are not nullable themselves get null members instead.
NULL_VALUES: dict[str, Any] = {
    "disability": {"disability_code": None, "disability_status": None, "disability_type": None},
    "preferred_name": {"first": None, "middle": None, "last": None},
}
# Fields that cannot be "" (objects; pattern- or enum-validated without ""): absent instead.
NO_EMPTY_STRING = frozenset({"credentials", "dob", "graduation_year", "location", "home_language",
                             "home_language_code", "disability", "preferred_name"})


def _blank_optional(user: Record, version: str, mode: str) -> None:
    """Blank a student's optional fields: ``absent`` drops them, ``null`` nulls them,
    ``empty`` sets them to "" (dropping those Clever never sends as "")."""
    role = user["roles"]["student"]
    role.pop("credentials")  # not nullable: absent in every variant
    fields = STUDENT_OPTIONAL[1:] + (STUDENT_OPTIONAL_V31 if version == "v3.1" else ())
    for container, key in [(user, "email"), (user["name"], "middle"), *[(role, f) for f in fields]]:
        if mode == "absent" or (mode == "empty" and key in NO_EMPTY_STRING):
            container.pop(key, None)
        else:
            container[key] = NULL_VALUES.get(key) if mode == "null" else ""


def _contact(plan: Plan, q: int) -> Record:
    """A guardian of student 10q; every other contact also of 10q+1 (a sibling)."""
    students = [s for s in (10 * q, 10 * q + 1) if s < plan.students][: 1 + q % 2]
    _, _, family = NAMED_STUDENTS.get(students[0]) or _pool_name(plan, "student", students[0], False)
    first = plan.pick("contact-first", q, FIRST_NAMES)
    user = _person(plan, "contact", q, (first, None, family),
                   None if q % 3 == 2 else f"{_slug(first)}.{q}@family.example", YEARS[0].start)
    contact: Record = {
        "sis_id": f"C{30000 + q}",
        "student_relationships": [{"student": plan.id("student", s), "relationship": "Parent",
                                   "type": "Parent/Guardian"} for s in students],
    }
    if q % 3 != 2:
        contact |= {"phone": f"(512) 555-{3000 + q % 7000:04d}", "phone_type": plan.pick("phone", q, ("Cell", "Home"))}
    user["roles"] = {"contact": contact}
    return user


def iter_resources(plan: Plan, version: str) -> Iterator[Record]:
    titles = ("Reading Workshop Library", "Math Practice Sets", "Science Lab Simulations")
    for r, title in enumerate(titles):
        stamp = _stamps(plan, "resource", r, YEARS[0].start)
        yield {"id": plan.id("resource", r), "district": plan.district_id, "resource_id": f"RES-{r + 1:03d}",
               "title": title, "roles": ["teacher", "student"] if r != 2 else ["teacher"],
               "created": stamp["created"], "updated": stamp["last_modified"]}


# -- District SSO: what an app without Secure Sync receives -------------------------------------
# The shipped District SSO sample (sample_data/sso_district): another district than the
# Secure Sync sample, so the two can share one warehouse.
SSO_SAMPLE_ARGS = {"seed": 21, "district_name": "Single Sign-On USD", "integration": "sso"}
YOUNG_GRADES = ("Kindergarten", "1")  # young students often have no email (Clever's users guide)


def sso_user(user: Record) -> Record:
    """A user as a District SSO app receives it: Clever ID, district, name, email as the
    district has it (absent for young students), and which roles it has, nothing about
    them (no school, SIS ID or demographics)."""
    cut: Record = {"id": user["id"], "district": user["district"], "name": user["name"],
                   "roles": {role: {} for role, detail in user["roles"].items() if detail is not None}}
    if "email" in user and (user["roles"].get("student") or {}).get("grade") not in YOUNG_GRADES:
        cut["email"] = user["email"]
    return cut


def iter_sso_users(plan: Plan, version: str) -> Iterator[Record]:
    """Every user a district administrator would scope to the app (not the contacts:
    guardians do not sign in to it), cut down to what the app receives."""
    for user in iter_users(plan, version):
        if "contact" not in user["roles"]:
            yield sso_user(user)


GENERATORS: dict[str, Callable[[Plan, str], Iterator[Record]]] = {
    "districts": iter_districts,
    "schools": iter_schools,
    "users": iter_users,
    "sections": iter_sections,
    "terms": iter_terms,
    "courses": iter_courses,
    "resources": iter_resources,
}


def iter_records(plan: Plan, version: str, endpoint: str,
                 integration: str = DEFAULT_INTEGRATION) -> Iterator[Record]:
    """Every record of one endpoint, in generation (not id) order, one at a time, as an app
    of ``integration`` receives it."""
    if version not in API_VERSIONS:
        raise ValueError(f"unknown API version {version!r}")
    if endpoint not in INTEGRATIONS[integration].readable:
        raise ValueError(f"an {integration} app receives no {endpoint}")
    if integration == "sso" and endpoint == "users":
        return iter_sso_users(plan, version)
    return GENERATORS[endpoint](plan, version)


# -- edge-case catalogue ------------------------------------------------------------------------
def edge_cases(plan: Plan, limit: int = 5) -> list[EdgeCase]:
    """The deliberate edge cases with up to ``limit`` example ids each (for README and tests)."""

    def student(i: int) -> tuple[str, str]:
        name = NAMED_STUDENTS.get(i) or _pool_name(plan, "student", i, with_middle=i % 3 == 0)
        return plan.id("student", i), f"student {name[0]} {name[2]}"

    def teacher(t: int) -> tuple[str, str]:
        name = NAMED_TEACHERS.get(t) or _pool_name(plan, "teacher", t, with_middle=t % 3 == 0)
        return plan.id("teacher", t), f"teacher {name[0]} {name[2]}"

    def cohort_students(condition: Callable[[int], bool]) -> tuple[tuple[str, str], ...]:
        found = (student(i) for c in range(plan.cohorts) if condition(c) for i in plan.cohort_members(c)
                 if not is_sectionless(i) and i != plan.dual_enrolled_student)
        return tuple(itertools.islice(found, limit))

    def changes_school(c: int) -> bool:
        return len({plan.cohort_school(c, y) for y in plan.cohort_years(c)}) > 1

    admin_name = " ".join(NAMED_TEACHERS[TEACHER_ADMIN][::2])
    sectionless = [i for i in range(SECTIONLESS_STUDENT_EVERY - 1, plan.students, SECTIONLESS_STUDENT_EVERY)]
    idle = [t for t in range(plan.teachers) if plan.is_idle_teacher(t)]
    return [
        EdgeCase("team_taught_section", "section with a primary teacher and three co-teachers",
                 ((section_id(plan, TEAM_SECTION), "section"),)),
        EdgeCase("dual_enrolled_student", "student at two schools in 2026-27 (school = primary)",
                 (student(plan.dual_enrolled_student),)),
        EdgeCase("teacher_admin_v30", f"v3.0: {admin_name} as two users, teacher and district admin",
                 (teacher(TEACHER_ADMIN), (plan.id("district_admin", 1), f"district admin {admin_name}"))),
        EdgeCase("teacher_admin_v31", f"v3.1: {admin_name} as one user with both roles (the teacher's id)",
                 (teacher(TEACHER_ADMIN),)),
        EdgeCase("two_school_teacher", "teacher at two schools", (teacher(TWO_SCHOOL_TEACHER),)),
        EdgeCase("sectionless_students", f"students in no section ({len(sectionless)} in all)",
                 tuple(student(i) for i in sectionless[:limit])),
        EdgeCase("sectionless_teachers", f"teachers who teach no section (at least {len(idle)})",
                 tuple(teacher(t) for t in idle[:limit])),
        EdgeCase("section_without_term_or_course", "section with no term_id and no course keys",
                 ((section_id(plan, "advisory"), "Advisory (unscheduled)"),)),
        EdgeCase("section_without_students", "section with students: []",
                 ((section_id(plan, "empty"), "Independent Study (no roster yet)"),)),
        EdgeCase("student_optional_absent", "student with every optional field absent (no email, "
                 "middle name, dob, grade, gender, race, ids, location, v3.1 demographics)",
                 (student(BARE_STUDENT),)),
        EdgeCase("student_optional_null", "student with every optional field present but null",
                 (student(NULL_STUDENT),)),
        EdgeCase("student_optional_empty", "student with optional fields as empty strings "
                 "(absent where Clever forbids \"\")", (student(EMPTY_STUDENT),)),
        EdgeCase("teacher_optional_absent", "teacher with no email, title, numbers or credentials",
                 (teacher(BARE_TEACHER),)),
        EdgeCase("school_optional_absent", "online-academy school with only guaranteed fields",
                 tuple((plan.id("school", s), "school") for s in plan.schools_by_kind["V"][:limit])),
        EdgeCase("international_names", "apostrophes, accents, hyphens, non-Latin scripts",
                 (*(student(i) for i in NAMED_STUDENTS), teacher(TWO_SCHOOL_TEACHER))),
        EdgeCase("hostile_section_name", "section name with quotes, backslash, tab, SQL and emoji",
                 ((section_id(plan, HOSTILE_SECTION), "section"),)),
        EdgeCase("hostile_teacher_title", "teacher title with quotes, backslash, tab, HTML and emoji",
                 (teacher(HOSTILE_TITLE_TEACHER),)),
        EdgeCase("students_both_years_same_school", "in sections in 2025-26 and 2026-27, same school",
                 cohort_students(lambda c: len(plan.cohort_years(c)) == 2 and not changes_school(c))),
        EdgeCase("students_changed_school", "2025-26 at one school, 2026-27 at another",
                 cohort_students(changes_school)),
        EdgeCase("students_only_2025_26", "graduated: sections only in 2025-26",
                 cohort_students(lambda c: plan.cohort_years(c) == (0,))),
        EdgeCase("students_only_2026_27", "new kindergarteners: sections only in 2026-27",
                 cohort_students(lambda c: plan.cohort_years(c) == (1,))),
        EdgeCase("contact_of_two_students", "contact with two student_relationships (siblings)",
                 ((plan.id("contact", 1), "contact"),)),
        EdgeCase("course_without_number", "course whose number is absent", ((course_id(plan, 0, 1), "course"),)),
        EdgeCase("course_with_null_name", "course whose name is null", ((course_id(plan, 12, 2), "course"),)),
    ]


def sso_edge_cases(plan: Plan, limit: int = 5) -> list[EdgeCase]:
    """The District SSO sample's edge cases, from its users as the app receives them."""
    users = {version: list(iter_sso_users(plan, version)) for version in API_VERSIONS}

    def examples(version: str, condition: Callable[[Record], bool]) -> tuple[tuple[str, str], ...]:
        found = ((u["id"], " ".join(filter(None, (u["name"].get("first"), u["name"].get("last")))))
                 for u in users[version] if condition(u))
        return tuple(itertools.islice(found, limit))

    no_email = [u for u in users["v3.0"] if "email" not in u]
    return [
        EdgeCase("users_without_email", f"no email at all ({len(no_email)} in v3.0: young students and a teacher)",
                 examples("v3.0", lambda u: "email" not in u)),
        EdgeCase("null_or_empty_email", "email null or \"\"",
                 examples("v3.0", lambda u: u.get("email", 1) in (None, ""))),
        EdgeCase("two_roles_v31", "v3.1: one user with the teacher and district_admin roles",
                 examples("v3.1", lambda u: len(u["roles"]) > 1)),
        EdgeCase("international_names", "apostrophes, accents, hyphens, non-Latin scripts",
                 tuple((plan.id("student", i), f"student {n[0]} {n[2]}") for i, n in NAMED_STUDENTS.items())),
    ]


def render_readme(plan: Plan, counts: dict[str, dict[str, int]], integration: str = DEFAULT_INTEGRATION) -> str:
    command = "python -m clever_devkit.sample_district --out <dir>"
    if plan.students != DEFAULT_STUDENTS:
        command += f" --students {plan.students}"
    if plan.seed:
        command += f" --seed {plan.seed}"
    if plan.district_name != DEFAULT_DISTRICT_NAME:
        command += f" --district-name {json.dumps(plan.district_name, ensure_ascii=False)}"
    sso = integration == "sso"
    if sso:
        command += " --integration sso"
    lines = [
        f"# {plan.district_name} (sample Clever district{', District SSO' if sso else ''})",
        "",
        "Generated, never hand-edited; regenerate (byte-identical) with:",
        "",
        f"    PYTHONPATH=plugins {command}",
        "",
        "`v3.0/` and `v3.1/` hold one JSON array per Data API endpoint, served by",
        "`python -m clever_devkit.simulator`. District id: " + f"`{plan.district_id}`.",
        *(["", "What a District SSO app (no Secure Sync) receives: the district, and its users' Clever",
           "IDs, names, emails and roles. Serve it with `--integration <slug>=sso`: every other",
           "endpoint answers 403 \"Resource not in token's scopes\", as Clever does."] if sso else []),
        "",
        "| endpoint | " + " | ".join(API_VERSIONS) + " |",
        "| --- | " + " | ".join("---:" for _ in API_VERSIONS) + " |",
        *[f"| {e} | " + " | ".join(str(counts[v][e]) for v in API_VERSIONS) + " |" for e in counts[API_VERSIONS[0]]],
        "",
        "## Edge cases",
        "",
        "| case | what | Clever ids |",
        "| --- | --- | --- |",
    ]
    for case in sso_edge_cases(plan) if sso else edge_cases(plan):
        examples = "<br>".join(f"`{cid}` {label}" for cid, label in case.examples)
        lines.append(f"| {case.key} | {case.description} | {examples.replace('|', '&#124;')} |")
    return "\n".join(lines) + "\n"


# -- writing ---------------------------------------------------------------------------------------
def _write_json_array(path: Path, records: Iterable[Record]) -> int:
    """One record per line, sorted keys; written beside and renamed so readers never see half."""
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8", newline="\n") as out:
        out.write("[")
        for record in records:
            out.write(",\n" if count else "\n")
            out.write(json.dumps(record, sort_keys=True, ensure_ascii=False))
            count += 1
        out.write("\n]\n" if count else "]\n")
    os.replace(tmp, path)
    return count


LAYOUTS = ("json", "sorted")


def generate(out_dir: Path | str, students: int | None = None, seed: int = 0,
             district_name: str = DEFAULT_DISTRICT_NAME, layout: str = "json",
             versions: Iterable[str] = API_VERSIONS,
             integration: str = DEFAULT_INTEGRATION) -> dict[str, dict[str, int]]:
    """Write the district under ``out_dir`` as an app of ``integration`` receives it (its
    endpoints only); returns record counts per version and endpoint.

    ``layout="json"``: one JSON array per endpoint (the shipped sample). ``"sorted"``:
    id-sorted JSON lines with an index (``clever_devkit.district_store``), written in bounded
    memory and served by the simulator without loading them, for districts of any size.
    """
    from clever_devkit.district_store import data_path, write_sorted

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    plan = Plan(students=DEFAULT_STUDENTS if students is None else students, seed=seed,
                district_name=district_name)
    out = Path(out_dir)
    endpoints = INTEGRATIONS[integration].readable
    counts: dict[str, dict[str, int]] = {}
    for version in versions:
        if version not in API_VERSIONS:
            raise ValueError(f"unknown API version {version!r}")
        (out / version).mkdir(parents=True, exist_ok=True)
        if layout == "sorted":
            counts[version] = {endpoint: write_sorted(iter_records(plan, version, endpoint, integration),
                                                      data_path(out, version, endpoint))
                               for endpoint in endpoints}
            continue
        counts[version] = {endpoint: _write_json_array(out / version / f"{endpoint}.json",
                                                       iter_records(plan, version, endpoint, integration))
                           for endpoint in endpoints}
    if set(counts) == set(API_VERSIONS):
        (out / "README.md").write_text(render_readme(plan, counts, integration), encoding="utf-8", newline="\n")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clever-sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write v3.0/ and v3.1/ into")
    parser.add_argument("--students", type=int, help=f"scale to N students (>= {MIN_STUDENTS}); "
                        f"default: the {DEFAULT_STUDENTS}-student sample")
    parser.add_argument("--seed", type=int, default=0, help="changes every id (a different district)")
    parser.add_argument("--district-name", default=DEFAULT_DISTRICT_NAME)
    parser.add_argument("--layout", choices=LAYOUTS, default="json",
                        help="json: a JSON array per endpoint; sorted: id-sorted JSON lines with an index, "
                             "written and served in bounded memory (large districts)")
    parser.add_argument("--integration", choices=INTEGRATION_NAMES, default=DEFAULT_INTEGRATION,
                        help="what the app receives: secure_sync (every endpoint) or sso (districts, and users "
                             "cut down to names, emails and roles)")
    parser.add_argument("--versions", nargs="+", choices=API_VERSIONS, default=list(API_VERSIONS),
                        help="API versions to write (default both)")
    args = parser.parse_args(argv)
    try:
        counts = generate(args.out, students=args.students, seed=args.seed, district_name=args.district_name,
                          layout=args.layout, versions=args.versions, integration=args.integration)
    except ValueError as exc:
        parser.error(str(exc))
    summary = ", ".join(f"{n} {endpoint}" for endpoint, n in next(iter(counts.values())).items())
    print(f"Wrote {args.district_name} to {args.out}: {summary} (per API version)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
