"""Deterministic application data (schema ``app``) for the sample district, for the demo.

The application predates Clever, so it already has the district, its schools and many
accounts, some with progress. ``seed_demo_app_data`` writes such data for
"Certification ISD" in the shapes a real application has them: accounts that the rules
match by Clever ID, SIS ID, state ID, email, or name and school; accounts that match
nothing (former students); duplicates that make a match ambiguous; a romanised name an
admin links by hand; progress of legacy accounts and of accounts provisioned from
Clever; and admin edits (extra roles, a custom group, a subgroup of a section).

Every row has a fixed ID and is inserted with ON CONFLICT DO NOTHING, so seeding again
never changes or duplicates anything, including rows an admin edited since.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from clever.app_schema import ensure_app_schema

SAMPLE_DISTRICT_DIR = Path(__file__).resolve().parent / "sample_data" / "certification_isd"

APP_DISTRICT = 1  # Certification ISD as the application's CRM knows it
OTHER_DISTRICTS = (2, 3)
# Students by position in SIS-ID order: which key their legacy account shares with Clever.
STUDENT_ACCOUNT_KEYS = ("sis_id", "state_id", "email", "name_school", "clever_id", None, None, None)
TEACHER_ACCOUNT_KEYS = ("sis_id", "email", None)
ACTIVITIES = ("Fractions practice", "Reading check-in", "Vocabulary quiz", "Science lab worksheet",
              "Map skills", "Spelling bee prep", "Multiplication facts", "Book report")
LEGACY_EVENT_START = datetime(2025, 9, 2, 14, 0, tzinfo=UTC)  # 2025-26, before the app used Clever IDs
CLEVER_EVENT_START = datetime(2026, 9, 1, 15, 0, tzinfo=UTC)  # 2026-27, accounts provisioned from Clever


@dataclass
class AppRows:
    """Rows per app table, in insertion order."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, table: str, **row: Any) -> dict[str, Any]:
        self.tables.setdefault(table, []).append(row)
        return row


def _number(*key: object) -> int:
    return int(hashlib.sha1(":".join(map(str, key)).encode()).hexdigest()[:8], 16)


def _ascii(text: str) -> str:
    """How an older system without Unicode support spelled a name ("Seán" -> "Sean")."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode() or text


def _load(district_dir: Path, api_version: str, endpoint: str) -> list[dict[str, Any]]:
    return json.loads((district_dir / api_version / f"{endpoint}.json").read_text(encoding="utf-8"))


def build_demo_rows(district_dir: Path = SAMPLE_DISTRICT_DIR, api_version: str = "v3.0",
                    district_slug: str = "demo") -> AppRows:
    """The app rows for the sample district (a few hundred rows; read from its JSON)."""
    users = _load(district_dir, api_version, "users")
    schools = sorted(_load(district_dir, api_version, "schools"), key=lambda s: s["sis_id"])
    sections = sorted(_load(district_dir, api_version, "sections"), key=lambda s: s["id"])
    rows = AppRows()

    rows.add("districts", app_district_id=APP_DISTRICT, name="Certification Independent School District",
             state="TX", nces_id="4812345")
    rows.add("districts", app_district_id=2, name="Springfield Public Schools", state="IL", nces_id="1734567")
    rows.add("districts", app_district_id=3, name="Certification ISD", state="OK")  # same name, other state

    # Schools: one per rule (as the app spelled them), a duplicate of the online academy,
    # a closed school, and a school of another district.
    app_school: dict[str, int] = {}
    for n, (school, key) in enumerate(zip(schools, ("clever_id", "nces_id", "state_id", "sis_id", None), strict=True)):
        row = rows.add("schools", app_school_id=101 + n, app_district_id=APP_DISTRICT, name=school["name"])
        if key == "clever_id":
            row |= {"clever_id": school["id"], "name": f"{school['name']} School"}
        elif key == "sis_id":
            row |= {"sis_id": school["sis_id"].lower(), "name": school["name"].replace("High School", "HS")}
        elif key:
            row[key] = school[key]
        app_school[school["id"]] = row["app_school_id"]
    online = schools[-1]
    rows.add("schools", app_school_id=106, app_district_id=APP_DISTRICT, name=online["name"].upper())
    rows.add("schools", app_school_id=107, app_district_id=APP_DISTRICT, name="Old Mill Elementary (closed 2024)")
    rows.add("schools", app_school_id=201, app_district_id=2, name="Springfield High School", nces_id="173456700001")
    rows.add("match_overrides", entity="school", district_slug=district_slug, clever_id=online["id"], app_id=106,
             reason="two app records for the online academy; 106 is the one in use", created_by="it.admin")
    app_school[online["id"]] = 106

    accounts = _user_accounts(rows, users, app_school, district_slug)
    _progress(rows, users, sections, accounts)
    _admin_edits(rows, users, sections, accounts)
    return rows


def _user_accounts(rows: AppRows, users: list[dict[str, Any]], app_school: dict[str, int],
                   district_slug: str) -> dict[str, int]:
    """Legacy accounts; returns {Clever ID: app_user_id} for accounts meant to match."""
    accounts: dict[str, int] = {}
    next_id = iter(range(1001, 100000))

    def account(role: str, user: dict[str, Any] | None, key: str | None, **fields: Any) -> int:
        app_user_id = next(next_id)
        row = rows.add("users", app_user_id=app_user_id, app_district_id=APP_DISTRICT, role=role, **fields)
        if user is not None:
            details = user["roles"][role]
            row.setdefault("first_name", user["name"]["first"])
            row.setdefault("last_name", user["name"]["last"])
            school = details.get("school") or (details.get("schools") or [None])[0]
            row.setdefault("app_school_id", app_school.get(school))
            if key == "sis_id":
                row["sis_id"] = details.get("sis_id") or details.get("staff_id")
            elif key == "state_id":
                row["state_id"] = details["state_id"]
            elif key == "email":
                row["email"] = user["email"]
            elif key == "clever_id":
                row["clever_id"] = user["id"]
            elif key == "name_school":  # typed without accents
                row["first_name"], row["last_name"] = _ascii(row["first_name"]), _ascii(row["last_name"])
            if key:
                accounts[user["id"]] = app_user_id
        return app_user_id

    def with_role(role: str, order: str) -> list[dict[str, Any]]:
        return sorted((u for u in users if role in u["roles"]), key=lambda u: u["roles"][role][order])

    students = with_role("student", "sis_id")
    by_name: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for student in students:
        name = (student["name"]["first"], student["name"]["last"], student["roles"]["student"]["school"])
        by_name.setdefault(name, []).append(student)
    namesakes = {s["id"] for group in by_name.values() if len(group) > 1 for s in group}
    first_email: dict[str, Any] | None = None
    for i, student in enumerate(students):
        key = STUDENT_ACCOUNT_KEYS[i % len(STUDENT_ACCOUNT_KEYS)]
        role = student["roles"]["student"]
        if key is None or student["id"] in namesakes or (key == "state_id" and not role.get("state_id")) or (
                key == "email" and not student.get("email")):
            continue  # no legacy account: the app provisions this student from Clever
        account("student", student, key)
        if key == "email" and first_email is None:
            first_email = student
    # Ambiguous: a duplicate account with the same email, made by a teacher by mistake.
    assert first_email is not None
    account("student", None, None, first_name=first_email["name"]["first"], last_name=first_email["name"]["last"],
            email=first_email["email"].upper())
    del accounts[first_email["id"]]
    # Ambiguous: one account by name and school for two Clever students of that name there.
    first, last, school = next(name for name, group in sorted(by_name.items()) if len(group) > 1)
    account("student", None, None, first_name=first, last_name=last, app_school_id=app_school[school])
    # Never shared by Clever: students who left before the district adopted it.
    for n, (first, last) in enumerate((("Marcus", "Bell"), ("Ingrid", "Sørensen"), ("Tomás", "Herrera"))):
        account("student", None, None, first_name=first, last_name=last, sis_id=f"S0{9000 + n}",
                email=f"s0{9000 + n}@students.certification-isd.example", app_school_id=107)
    # Linked by hand: the app has the romanised name and no IDs.
    romanised = next(s for s in students if s["name"]["last"] == "李")
    rows.add("match_overrides", entity="user", district_slug=district_slug, clever_id=romanised["id"],
             app_id=account("student", None, None, first_name="Xiaolong", last_name="Li"),
             reason="same student; the app has the romanised name", created_by="registrar")
    accounts[romanised["id"]] = rows.tables["users"][-1]["app_user_id"]

    for i, teacher in enumerate(with_role("teacher", "sis_id")):
        key = TEACHER_ACCOUNT_KEYS[i % len(TEACHER_ACCOUNT_KEYS)]
        if i == 0:  # Dana Whitfield: SIS ID and email, which her district-admin record (v3.0) shares
            account("teacher", teacher, "sis_id", email=teacher["email"])
        elif key and (key != "email" or teacher.get("email")):
            account("teacher", teacher, key)
    for staff in with_role("staff", "staff_id")[:4]:
        account("staff", staff, "email")
    superintendent = next(u for u in users if u["roles"].get("district_admin", {}).get("title") == "Superintendent")
    account("district_admin", superintendent, "email")
    # A shared front-office mailbox once had an account; an admin keeps it unlinked.
    front_desk = with_role("staff", "staff_id")[4]
    account("staff", None, None, first_name="Front", last_name="Office", email=front_desk["email"])
    rows.add("match_overrides", entity="user", district_slug=district_slug, clever_id=front_desk["id"], app_id=None,
             reason="the old account is a shared mailbox, not this person", created_by="it.admin")
    return accounts


def _student_sections(sections: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_student: dict[str, list[dict[str, Any]]] = {}
    for section in sections:
        for student in section.get("students") or []:
            by_student.setdefault(student, []).append(section)
    return by_student


def _progress(rows: AppRows, users: list[dict[str, Any]], sections: list[dict[str, Any]],
              accounts: dict[str, int]) -> None:
    """Three legacy events per legacy student account (2025-26), two per Clever-only
    student (2026-27); most in a class, some with no class recorded."""
    sections_of = _student_sections(sections)
    legacy_accounts = {a["app_user_id"] for a in rows.tables["users"] if a["role"] == "student"}
    event_id = iter(range(1, 10**6))
    for account in rows.tables["users"]:
        if account["app_user_id"] not in legacy_accounts:
            continue
        clever = next((cid for cid, aid in accounts.items() if aid == account["app_user_id"]), None)
        older = [s for s in sections_of.get(clever or "", []) if "2025-26" in s["name"]]
        for k in range(3):
            _event(rows, next(event_id), k, account["app_user_id"], None, LEGACY_EVENT_START, older)
    for user in sorted((u for u in users if "student" in u["roles"] and u["id"] not in accounts),
                       key=lambda u: u["id"]):
        newer = [s for s in sections_of.get(user["id"], []) if "2026-27" in s["name"]]
        for k in range(2):
            _event(rows, next(event_id), k, None, user["id"], CLEVER_EVENT_START, newer)


def _event(rows: AppRows, event_id: int, k: int, app_user_id: int | None, student_clever_id: str | None,
           start: datetime, sections: list[dict[str, Any]]) -> None:
    n = _number("event", event_id)
    section = sections[n % len(sections)]["id"] if sections and k != 2 else None
    scored = n % 4 != 0
    rows.add("progress_events", progress_event_id=event_id, app_user_id=app_user_id,
             student_clever_id=student_clever_id, activity=ACTIVITIES[n % len(ACTIVITIES)],
             score=(40 + n % 61) if scored else None, completed=None if scored else n % 3 != 0,
             section_clever_id=section,
             occurred_at=start + timedelta(days=29 * k + n % 20, minutes=n % 300))


def _admin_edits(rows: AppRows, users: list[dict[str, Any]], sections: list[dict[str, Any]],
                 accounts: dict[str, int]) -> None:
    dana = next(u for u in users if "teacher" in u["roles"] and u["roles"]["teacher"].get("sis_id") == "T1000")
    rows.add("role_grants", role_grant_id=1, app_user_id=accounts[dana["id"]], role="school_admin", app_school_id=101,
             granted_by="principal1", note="runs the Maple Grove reading programme")
    coteacher = next(u for u in users if "teacher" in u["roles"] and u["roles"]["teacher"].get("sis_id") == "T1001")
    rows.add("role_grants", role_grant_id=2, user_clever_id=coteacher["id"], role="content_reviewer",
             granted_by="it.admin")
    team = max(sections, key=lambda s: (len(s.get("teachers") or []), s["id"]))
    rows.add("groups", group_id=1, app_district_id=APP_DISTRICT, name="Reading intervention", kind="custom",
             created_by="principal1")
    rows.add("groups", group_id=2, app_district_id=APP_DISTRICT, name=f"{team['name']}: table A",
             kind="section_subgroup", section_clever_id=team["id"], created_by="teacher")
    member_id = iter(range(1, 10**6))
    roster = sorted(team["students"])
    students = {u["id"] for u in users if "student" in u["roles"]}
    legacy = [(cid, aid) for cid, aid in sorted(accounts.items()) if cid in students][:2]
    for _, app_user_id in legacy:
        rows.add("group_members", group_member_id=next(member_id), group_id=1, app_user_id=app_user_id,
                 added_by="principal1")
    for clever_id in roster[:2]:
        rows.add("group_members", group_member_id=next(member_id), group_id=1, user_clever_id=clever_id,
                 added_by="principal1")
    for clever_id in roster[:3]:
        rows.add("group_members", group_member_id=next(member_id), group_id=2, user_clever_id=clever_id,
                 added_by="teacher")


def _insert(conn: psycopg.Connection, table: str, rows: Iterable[dict[str, Any]]) -> int:
    inserted = 0
    for row in rows:
        columns = list(row)
        query = sql.SQL("INSERT INTO app.{} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)))
        inserted += conn.execute(query, [row[c] for c in columns]).rowcount
    return inserted


_ID_COLUMNS = {"districts": "app_district_id", "schools": "app_school_id", "users": "app_user_id",
               "progress_events": "progress_event_id", "role_grants": "role_grant_id", "groups": "group_id",
               "group_members": "group_member_id"}


def seed_demo_app_data(conninfo: str, district_dir: Path = SAMPLE_DISTRICT_DIR, api_version: str = "v3.0",
                       district_slug: str = "demo") -> dict[str, int]:
    """Write the demo's app rows (idempotent); returns rows inserted per table."""
    rows = build_demo_rows(district_dir, api_version, district_slug)
    counts: dict[str, int] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ensure_app_schema(conn)
        with conn.transaction():
            for table, table_rows in rows.tables.items():
                counts[table] = _insert(conn, table, table_rows)
            for table, column in _ID_COLUMNS.items():  # later inserts without an ID must not collide
                conn.execute(sql.SQL("SELECT setval(pg_get_serial_sequence({t}, {c}), "
                                     "coalesce((SELECT max({col}) FROM app.{tbl}), 0) + 1, false)").format(
                    t=sql.Literal(f"app.{table}"), c=sql.Literal(column), col=sql.Identifier(column),
                    tbl=sql.Identifier(table)))
    return counts


def iter_summary_lines(conninfo: str) -> Iterator[str]:
    """The match summary (clever_marts.rpt_match_summary) and progress, for `make demo`."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            """SELECT district_slug, entity, side, outcome, coalesce(match_source || ' by ' || rule, ''), records
               FROM clever_marts.rpt_match_summary
               ORDER BY district_slug NULLS LAST, array_position(array['district','school','user'], entity),
                        side, outcome, 5""").fetchall()
        for slug, entity, side, outcome, how, records in rows:
            yield f"  {slug or '(unlinked)':<10} {entity:<9} {side:<7} {outcome:<17} {how:<24} {records:>5}"
        linked, total = conn.execute(
            "SELECT count(*) FILTER (WHERE student_clever_id IS NOT NULL), count(*) "
            "FROM clever_marts.fct_student_progress").fetchone()
        yield f"  progress events tied to a student's Clever ID: {linked} of {total}"
