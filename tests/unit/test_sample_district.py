"""The sample district generator: determinism, the shipped copy, edge cases, integrity, scale."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from clever.catalog import API_VERSIONS, DATA_TYPES, ENDPOINTS
from clever_devkit.sample_district import (
    DEFAULT_STUDENTS,
    HOSTILE_SECTION_NAME,
    HOSTILE_TITLE,
    NAMED_STUDENTS,
    SSO_SAMPLE_ARGS,
    STUDENT_OPTIONAL,
    STUDENT_OPTIONAL_V31,
    Plan,
    edge_cases,
    generate,
    main,
    sso_edge_cases,
)
from clever_devkit.simulator import SAMPLE_DISTRICT_DIR, SAMPLE_SSO_DISTRICT_DIR
from clever_devkit.suites import SPEC_DIR  # Clever's OpenAPI specs, kept in the repository

HEX24 = re.compile(r"[0-9a-f]{24}")
V31_ONLY_STUDENT = set(STUDENT_OPTIONAL_V31)
V31_ONLY_DISTRICT = {"lms_state", "lms_type", "last_attendance_sync"}
SCALED_STUDENTS = 2000


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


class District:
    """One API version of a generated district, indexed for assertions."""

    def __init__(self, directory: Path, version: str):
        self.version = version
        self.records = {e: json.loads((directory / version / f"{e}.json").read_text(encoding="utf-8"))
                        for e in ENDPOINTS}
        self.by_id = {e: {r["id"]: r for r in rs} for e, rs in self.records.items()}
        self.district_id = self.records["districts"][0]["id"]
        self.users = self.by_id["users"]
        self.sections = self.by_id["sections"]
        self.term_year = {t["id"]: t["name"][:7] for t in self.records["terms"]}

    def with_role(self, role: str) -> list[dict[str, Any]]:
        return [u for u in self.records["users"] if u["roles"].get(role) is not None]

    def section_people(self, key: str) -> set[str]:
        return {person for s in self.records["sections"] for person in s[key]}

    def student_years(self) -> dict[str, dict[str, set[str]]]:
        """student id -> school year -> schools of the sections they are in that year."""
        years: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for section in self.records["sections"]:
            if "term_id" in section:
                for student in section["students"]:
                    years[student][self.term_year[section["term_id"]]].add(section["school"])
        return years


@cache
def load(directory: Path, version: str) -> District:
    return District(directory, version)


@pytest.fixture(scope="module")
def scaled_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scaled")
    assert main(["--out", str(out), "--students", str(SCALED_STUDENTS), "--seed", "5"]) == 0
    return out


@pytest.fixture(params=["sample", "scaled"])
def any_dir(request: pytest.FixtureRequest, scaled_dir: Path) -> Path:
    return SAMPLE_DISTRICT_DIR if request.param == "sample" else scaled_dir


@pytest.fixture(params=API_VERSIONS)
def sample(request: pytest.FixtureRequest) -> District:
    return load(SAMPLE_DISTRICT_DIR, request.param)


def example_ids(key: str, plan: Plan | None = None) -> list[str]:
    case = next(c for c in edge_cases(plan or Plan()) if c.key == key)
    return [cid for cid, _ in case.examples]


# -- determinism -------------------------------------------------------------------------------------
def test_generation_is_deterministic(tmp_path):
    generate(tmp_path / "a")
    generate(tmp_path / "b")
    assert files(tmp_path / "a") == files(tmp_path / "b")
    generate(tmp_path / "c", seed=1)
    assert load(tmp_path / "c", "v3.0").district_id != load(tmp_path / "a", "v3.0").district_id


def test_shipped_sample_equals_a_fresh_generation(tmp_path):
    generate(tmp_path)
    assert files(SAMPLE_DISTRICT_DIR) == files(tmp_path), (
        "devkit/clever_devkit/sample_data/certification_isd drifted: run `make sample-data`")
    assert set(files(tmp_path)) == {"README.md"} | {f"{v}/{e}.json" for v in API_VERSIONS for e in ENDPOINTS}


def test_files_are_utf8_with_sorted_keys_one_record_per_line():
    text = (SAMPLE_DISTRICT_DIR / "v3.1" / "users.json").read_text(encoding="utf-8")
    assert "李" in text and "\\u" not in text.replace("\\\\", "")
    lines = text.splitlines()[1:-1]
    assert len(lines) == len(load(SAMPLE_DISTRICT_DIR, "v3.1").records["users"])
    for line in lines:
        record = json.loads(line.rstrip(","))
        assert list(record) == sorted(record)


def test_readme_lists_every_edge_case_with_ids():
    readme = (SAMPLE_DISTRICT_DIR / "README.md").read_text(encoding="utf-8")
    assert "python -m clever_devkit.sample_district --out" in readme
    for case in edge_cases(Plan()):
        assert f"| {case.key} |" in readme
        assert all(cid in readme for cid, _ in case.examples)


# -- shape and integrity (sample and scaled, both versions) -------------------------------------------
@pytest.mark.parametrize("version", API_VERSIONS)
def test_ids_are_unique_clever_style_ids(any_dir, version):
    ids = [r["id"] for e in ENDPOINTS for r in load(any_dir, version).records[e]]
    assert all(HEX24.fullmatch(i) for i in ids)
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("version", API_VERSIONS)
def test_guaranteed_fields_are_always_present(any_dir, version):
    d = load(any_dir, version)
    guaranteed = {
        "districts": {"id", "name", "sis_type", "launch_date", "portal_url", "login_methods"},
        "schools": {"id", "district", "name", "created", "last_modified", "sis_id", "school_number"},
        "users": {"id", "district", "name", "created", "last_modified", "roles"},
        "sections": {"id", "district", "name", "school", "sis_id", "teachers", "students", "created",
                     "last_modified"},
        "terms": {"id", "district"},
        "courses": {"id", "district"},
        "resources": {"id", "district"},
    }
    for endpoint, keys in guaranteed.items():
        assert d.records[endpoint], endpoint
        for record in d.records[endpoint]:
            assert keys <= set(record), (endpoint, record["id"], keys - set(record))
            assert record.get("district", d.district_id) == d.district_id
    for user in d.records["users"]:
        assert isinstance(user["name"]["first"], str) and isinstance(user["name"]["last"], str)
        assert user["roles"]
    for student in d.with_role("student"):
        role = student["roles"]["student"]
        assert {"school", "schools", "enrollments", "sis_id"} <= set(role)
        assert role["school"] == role["schools"][0]
    for teacher in d.with_role("teacher"):
        role = teacher["roles"]["teacher"]
        assert {"school", "schools", "sis_id"} <= set(role) and role["school"] == role["schools"][0]


@pytest.mark.parametrize("version", API_VERSIONS)
def test_references_resolve(any_dir, version):
    d = load(any_dir, version)
    schools, terms, courses = d.by_id["schools"], d.by_id["terms"], d.by_id["courses"]
    students = {u["id"]: u for u in d.with_role("student")}
    teachers = {u["id"]: u for u in d.with_role("teacher")}
    without_term_or_course = []
    for s in d.records["sections"]:
        assert s["school"] in schools
        if "term_id" not in s or "course" not in s:
            without_term_or_course.append(s["id"])
        else:
            assert s["term_id"] in terms and s["course"] in courses
        assert s["teacher"] == s["teachers"][0]
        for t in s["teachers"]:
            assert s["school"] in teachers[t]["roles"]["teacher"]["schools"], "teacher not at the section's school"
        for st in s["students"]:
            assert s["school"] in students[st]["roles"]["student"]["schools"], "student not at the section's school"
    assert without_term_or_course == example_ids("section_without_term_or_course", Plan(*plan_args(any_dir)))
    for u in d.records["users"]:
        roles = u["roles"]
        for school in (roles.get("student") or roles.get("teacher") or roles.get("staff") or {}).get("schools", []):
            assert school in schools
        for enrollment in (roles.get("student") or {}).get("enrollments", []):
            assert enrollment["school"] in roles["student"]["schools"]
        for rel in (roles.get("contact") or {}).get("student_relationships", []):
            assert rel["student"] in students
    assert d.records["districts"][0]["district_contact"]["id"] in d.users


def plan_args(directory: Path) -> tuple[int, int]:
    return (DEFAULT_STUDENTS, 0) if directory == SAMPLE_DISTRICT_DIR else (SCALED_STUDENTS, 5)


# -- the edge cases, concretely (shipped sample) --------------------------------------------------------
def test_team_taught_section(sample):
    (section_id,) = example_ids("team_taught_section")
    section = sample.sections[section_id]
    assert len(section["teachers"]) >= 4 and len(set(section["teachers"])) == len(section["teachers"])
    assert section["teacher"] == section["teachers"][0]
    assert section["students"]


def test_student_enrolled_in_two_schools(sample):
    (student_id,) = example_ids("dual_enrolled_student")
    role = sample.users[student_id]["roles"]["student"]
    assert len(role["schools"]) == 2 and role["school"] == role["schools"][0]
    assert sample.student_years()[student_id]["2026-27"] == set(role["schools"]), "sections at both, same year"


def test_teacher_who_is_district_admin(sample):
    teacher_id, v30_admin_id = example_ids("teacher_admin_v30")
    teacher = sample.users[teacher_id]
    if sample.version == "v3.0":
        admin = sample.users[v30_admin_id]
        assert set(teacher["roles"]) == {"teacher"} and set(admin["roles"]) == {"district_admin"}
        assert (admin["name"], admin["email"]) == (teacher["name"], teacher["email"])
    else:
        assert set(teacher["roles"]) == {"teacher", "district_admin"}
        assert v30_admin_id not in sample.users
        assert example_ids("teacher_admin_v31") == [teacher_id]


def test_teacher_in_two_schools_teaches_at_both(sample):
    (teacher_id,) = example_ids("two_school_teacher")
    schools = sample.users[teacher_id]["roles"]["teacher"]["schools"]
    taught = {s["school"] for s in sample.records["sections"] if teacher_id in s["teachers"]}
    assert len(schools) == 2 and taught == set(schools)


def test_students_and_teachers_in_no_section(sample):
    students = {u["id"] for u in sample.with_role("student")} - sample.section_people("students")
    teachers = {u["id"] for u in sample.with_role("teacher")} - sample.section_people("teachers")
    assert students == set(example_ids("sectionless_students")) and len(students) == 2
    assert set(example_ids("sectionless_teachers")) <= teachers


def test_section_without_term_or_course_and_section_without_students(sample):
    (advisory_id,) = example_ids("section_without_term_or_course")
    assert not {"term_id", "course"} & set(sample.sections[advisory_id])
    (empty_id,) = example_ids("section_without_students")
    assert sample.sections[empty_id]["students"] == []
    assert [s["id"] for s in sample.records["sections"] if not s["students"]] == [empty_id]


def test_student_with_every_optional_field_absent(sample):
    (student_id,) = example_ids("student_optional_absent")
    user = sample.users[student_id]
    role = user["roles"]["student"]
    assert "email" not in user and set(user["name"]) == {"first", "last"}
    assert set(role) == {"school", "schools", "enrollments", "sis_id"}


def test_student_with_every_optional_field_null(sample):
    (student_id,) = example_ids("student_optional_null")
    user = sample.users[student_id]
    role = user["roles"]["student"]
    assert user["email"] is None and user["name"]["middle"] is None
    nullable = set(STUDENT_OPTIONAL) - {"credentials"}
    if sample.version == "v3.1":
        nullable |= V31_ONLY_STUDENT - {"disability", "preferred_name"}
        assert set(role["disability"].values()) == {None} and set(role["preferred_name"].values()) == {None}
    assert {k: role[k] for k in nullable} == dict.fromkeys(nullable)


def test_student_with_empty_string_fields(sample):
    (student_id,) = example_ids("student_optional_empty")
    user = sample.users[student_id]
    role = user["roles"]["student"]
    assert user["email"] == "" and user["name"]["middle"] == ""
    assert {role[k] for k in ("gender", "grade", "race", "state_id", "student_number", "ell_status")} == {""}
    assert "dob" not in role, "dob is pattern-validated: never an empty string"


def test_teacher_and_school_with_optional_fields_absent(sample):
    (teacher_id,) = example_ids("teacher_optional_absent")
    teacher = sample.users[teacher_id]
    assert "email" not in teacher and set(teacher["roles"]["teacher"]) == {"school", "schools", "sis_id"}
    (school_id,) = example_ids("school_optional_absent")
    assert set(sample.by_id["schools"][school_id]) == {"id", "district", "name", "sis_id", "school_number",
                                                       "created", "last_modified"}
    complete = [s for s in sample.records["schools"] if "nces_id" in s and "state_id" in s]
    assert len(complete) == 4


def test_international_and_hostile_strings(sample):
    names = {(u["name"]["first"], u["name"]["last"]) for u in sample.records["users"]}
    for first, _, last in NAMED_STUDENTS.values():
        assert (first, last) in names
    text = " ".join(f"{first} {last}" for first, last in names)
    for fragment in ("O'Brien", "José", "Zoë", "Mary-Kate", "Smith-Jones", "李", "Алексей", "محمد", "김", "Ελένη"):
        assert fragment in text
    (section_id,) = example_ids("hostile_section_name")
    name = sample.sections[section_id]["name"]
    assert name == HOSTILE_SECTION_NAME
    for fragment in ("'", '"', "\\", "\t", "DROP TABLE students;--", "🎓"):
        assert fragment in name
    (teacher_id,) = example_ids("hostile_teacher_title")
    assert sample.users[teacher_id]["roles"]["teacher"]["title"] == HOSTILE_TITLE


def test_school_year_rollover(sample):
    assert sorted(t["name"] for t in sample.records["terms"]) == sorted(
        f"{y} {n}" for y in ("2025-26", "2026-27") for n in ("Full Year", "Fall Semester", "Spring Semester"))
    years = sample.student_years()
    both = {s for s, y in years.items() if set(y) == {"2025-26", "2026-27"}}
    changed = {s for s in both if years[s]["2025-26"].isdisjoint(years[s]["2026-27"])}
    only_old = {s for s, y in years.items() if set(y) == {"2025-26"}}
    only_new = {s for s, y in years.items() if set(y) == {"2026-27"}}
    assert both and changed and only_old and only_new
    assert set(example_ids("students_changed_school")) <= changed
    assert set(example_ids("students_both_years_same_school")) <= both - changed
    assert set(example_ids("students_only_2025_26")) <= only_old
    assert set(example_ids("students_only_2026_27")) <= only_new


def test_contacts_and_courses(sample):
    contacts = sample.with_role("contact")
    assert 3 <= len(contacts) <= 20
    (two_students,) = example_ids("contact_of_two_students")
    assert len(sample.users[two_students]["roles"]["contact"]["student_relationships"]) == 2
    (no_number,) = example_ids("course_without_number")
    assert "number" not in sample.by_id["courses"][no_number]
    (null_name,) = example_ids("course_with_null_name")
    assert sample.by_id["courses"][null_name]["name"] is None


def test_sample_size_and_roles(sample):
    counts = Counter(role for u in sample.records["users"] for role in u["roles"])
    assert counts["student"] == DEFAULT_STUDENTS
    assert counts["teacher"] == 12 and counts["staff"] == 11 and counts["district_admin"] == 2
    assert len(sample.records["schools"]) == 5
    assert sample.records["districts"][0]["name"] == "Certification ISD"
    assert sample.records["districts"][0]["nces_id"]


def test_v31_only_fields_appear_only_in_v31():
    def keys(value: Any) -> set[str]:
        if isinstance(value, dict):
            return set(value) | {k for v in value.values() for k in keys(v)}
        if isinstance(value, list):
            return {k for v in value for k in keys(v)}
        return set()

    v30, v31 = load(SAMPLE_DISTRICT_DIR, "v3.0"), load(SAMPLE_DISTRICT_DIR, "v3.1")
    v31_only = V31_ONLY_STUDENT | V31_ONLY_DISTRICT | {"lms_status"}
    assert not keys(v30.records) & v31_only
    assert v31_only <= keys(v31.records)
    demographics = [u for u in v31.with_role("student") if "frl_status" in u["roles"]["student"]]
    assert 10 <= len(demographics) < DEFAULT_STUDENTS
    assert any("lms_status" in s for s in v31.records["sections"])


# -- conformance to Clever's OpenAPI definitions -------------------------------------------------------
DEFINITION_OF = {t.endpoint: t.definition for t in DATA_TYPES if t.definition}


def conformance_errors(value: Any, schema: dict[str, Any], definitions: dict[str, Any], path: str) -> list[str]:
    nullable = schema.get("x-nullable", False)
    if "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[1]]
        nullable = nullable or schema.get("x-nullable", False)
    if value is None:
        return [] if nullable else [f"{path}: null but not x-nullable"]
    if "properties" in schema:
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        errors = [f"{path}.{k}: not in the spec" for k in value if k not in schema["properties"]]
        for k, v in value.items():
            if k in schema["properties"]:
                errors += conformance_errors(v, schema["properties"][k], definitions, f"{path}.{k}")
        return errors
    kind = schema.get("type")
    if kind == "array":
        if not isinstance(value, list):
            return [f"{path}: not an array"]
        return [e for i, v in enumerate(value) for e in conformance_errors(v, schema["items"], definitions,
                                                                            f"{path}[{i}]")]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{path}: not a string"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{path}: {value!r} not in enum"]
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            return [f"{path}: {value!r} does not match {schema['pattern']}"]
    if kind == "boolean" and not isinstance(value, bool):
        return [f"{path}: not a boolean"]
    return []


@pytest.mark.parametrize("version", API_VERSIONS)
def test_records_conform_to_the_clever_openapi_definitions(any_dir, version):
    definitions = yaml.safe_load((SPEC_DIR / f"{version}.yml").read_text(encoding="utf-8"))["definitions"]
    d = load(any_dir, version)
    errors = [e for endpoint, definition in DEFINITION_OF.items() for record in d.records[endpoint]
              for e in conformance_errors(record, definitions[definition], definitions,
                                          f"{endpoint}/{record['id']}")]
    assert errors == []


# -- scaling ---------------------------------------------------------------------------------------------------
def test_scaled_district_keeps_the_documented_ratios(scaled_dir):
    d = load(scaled_dir, "v3.0")
    students = d.with_role("student")
    sections = d.records["sections"]
    assert len(students) == SCALED_STUDENTS
    assert len(d.with_role("teacher")) == round(SCALED_STUDENTS / 17)
    assert len(sections) == pytest.approx(SCALED_STUDENTS / 5, rel=0.1)
    enrolments = sum(len(s["students"]) for s in sections)
    assert 4.5 <= enrolments / SCALED_STUDENTS <= 6.5
    assert len(d.records["schools"]) == 5
    assert len(d.with_role("contact")) == SCALED_STUDENTS // 10
    plan = Plan(students=70_000)
    assert (plan.schools, plan.teachers, plan.cohort_size) == (100, round(70_000 / 17), 28)


def test_scaled_district_keeps_every_edge_case(scaled_dir):
    plan = Plan(students=SCALED_STUDENTS, seed=5)
    d = load(scaled_dir, "v3.1")
    for case in edge_cases(plan):
        if case.key == "teacher_admin_v30":
            continue  # its admin twin exists only in v3.0
        assert all(cid in d.users or cid in d.sections or cid in d.by_id["schools"] or cid in d.by_id["courses"]
                   for cid, _ in case.examples), case.key
    (section_id,) = example_ids("team_taught_section", plan)
    assert len(d.sections[section_id]["teachers"]) == 4


def test_too_few_students_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--out", str(tmp_path), "--students", "50"])
    assert info.value.code == 2
    assert "112" in capsys.readouterr().err


# -- the District SSO sample ------------------------------------------------------------------------------------
SSO_USER_KEYS = {"id", "district", "name", "email", "roles"}


def sso_records(version: str) -> dict[str, list[dict[str, Any]]]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8"))
            for p in (SAMPLE_SSO_DISTRICT_DIR / version).glob("*.json")}


def test_shipped_sso_sample_equals_a_fresh_generation(tmp_path):
    generate(tmp_path, **SSO_SAMPLE_ARGS)
    assert files(SAMPLE_SSO_DISTRICT_DIR) == files(tmp_path), (
        "devkit/clever_devkit/sample_data/sso_district drifted: run `make sample-data`")
    assert set(files(tmp_path)) == {"README.md"} | {f"{v}/{e}.json" for v in API_VERSIONS
                                                    for e in ("districts", "users")}
    readme = (SAMPLE_SSO_DISTRICT_DIR / "README.md").read_text(encoding="utf-8")
    assert "--integration sso" in readme
    for case in sso_edge_cases(Plan(seed=SSO_SAMPLE_ARGS["seed"], district_name=SSO_SAMPLE_ARGS["district_name"])):
        assert f"| {case.key} |" in readme and case.examples, case.key
        assert all(cid in readme for cid, _ in case.examples)


@pytest.mark.parametrize("version", API_VERSIONS)
def test_sso_sample_users_carry_only_what_a_district_sso_app_receives(version):
    records = sso_records(version)
    definitions = yaml.safe_load((SPEC_DIR / f"{version}.yml").read_text(encoding="utf-8"))["definitions"]
    (district,) = records["districts"]
    users = records["users"]
    assert len(users) > 100 and len({u["id"] for u in users}) == len(users)
    assert district["id"] != load(SAMPLE_DISTRICT_DIR, version).district_id  # another district than the demo's
    for user in users:
        assert set(user) <= SSO_USER_KEYS and set(user) >= SSO_USER_KEYS - {"email"}, user["id"]
        assert user["district"] == district["id"] and user["roles"] and all(r == {} for r in user["roles"].values())
        assert conformance_errors(user, definitions["User"], definitions, user["id"]) == []
    roles = Counter(role for u in users for role in u["roles"])
    assert set(roles) == {"student", "teacher", "staff", "district_admin"}  # guardians do not sign in
    without_email = [u for u in users if not u.get("email")]
    assert 10 <= len(without_email) < len(users) // 4
    assert any("email" not in u for u in users) and any(u.get("email", 1) is None for u in users)
    if version == "v3.1":
        assert any(len(u["roles"]) == 2 for u in users)
