"""Per-district matching settings (config/districts.yml `matching:`) and the demo's app data."""

from __future__ import annotations

import pytest
import yaml

from clever.config import ConfigError, load_districts
from clever.match_rules import RULES
from clever_devkit.demo_app_data import build_demo_rows


def districts(tmp_path, document: dict):
    path = tmp_path / "districts.yml"
    path.write_text(yaml.safe_dump(document))
    return {d.slug: d for d in load_districts(path)}


def test_default_order_is_the_issue_order_and_a_district_may_reorder_or_drop_rules(tmp_path):
    found = districts(tmp_path, {
        "defaults": {"matching": {"schools": ["clever_id", "nces_id", "name"]}},
        "districts": [{"slug": "a"},
                      {"slug": "b", "matching": {"users": ["clever_id", "email", "sis_id"], "state": "tx"}}],
    })
    a, b = found["a"].matching, found["b"].matching
    assert a.rules["districts"] == ("clever_id", "nces_id", "name_state")
    assert a.rules["users"] == ("clever_id", "sis_id", "state_id", "email", "name_school")
    assert a.rules["schools"] == ("clever_id", "nces_id", "name") == b.rules["schools"]  # from defaults
    assert b.rules["users"] == ("clever_id", "email", "sis_id") and b.state == "TX"
    assert a.state is None
    settings = b.as_settings()
    assert [r["rule"] for r in settings["users"]] == ["clever_id", "email", "sis_id"]
    assert settings["users"][1]["confidence"] == RULES["users"]["email"][0]


@pytest.mark.parametrize(("matching", "message"), [
    ({"users": ["clever_id", "shoe_size"]}, "unknown rule"),
    ({"students": ["clever_id"]}, "unknown entity"),
    ({"users": ["email", "email"]}, "twice"),
    ({"users": "email"}, "list of rule names"),
    ({"state": "Texas"}, "two-letter"),
])
def test_a_bad_matching_setting_names_the_district_and_the_problem(tmp_path, matching, message):
    with pytest.raises(ConfigError, match=message) as raised:
        districts(tmp_path, {"districts": [{"slug": "springfield", "matching": matching}]})
    assert "springfield" in str(raised.value)


def test_demo_app_data_is_deterministic_and_has_every_kind_of_record():
    rows = build_demo_rows()
    assert rows.tables == build_demo_rows().tables
    users = rows.tables["users"]
    assert len({u["app_user_id"] for u in users}) == len(users)
    keys = {k for u in users for k in ("sis_id", "state_id", "email", "clever_id") if u.get(k)}
    assert keys == {"sis_id", "state_id", "email", "clever_id"}
    emails = [u["email"].lower() for u in users if u.get("email")]
    assert len(emails) > len(set(emails))  # a duplicate account: an ambiguous match
    overrides = rows.tables["match_overrides"]
    assert {o["entity"] for o in overrides} == {"school", "user"} and any(o["app_id"] is None for o in overrides)
    events = rows.tables["progress_events"]
    assert any(e["app_user_id"] for e in events) and any(e["student_clever_id"] for e in events)
    assert {g["kind"] for g in rows.tables["groups"]} == {"custom", "section_subgroup"}


def test_reissued_terms_and_courses_are_linked_automatically_only_where_configured(tmp_path):
    found = districts(tmp_path, {
        "defaults": {"reissued_ids": {"link_automatically": ["terms"]}},
        "districts": [{"slug": "a"}, {"slug": "b", "reissued_ids": {"link_automatically": ["terms", "courses"]}},
                      {"slug": "c", "reissued_ids": {"link_automatically": []}}],
    })
    assert [found[slug].link_reissued_ids_automatically for slug in "abc"] == [("terms",), ("terms", "courses"), ()]
    assert districts(tmp_path, {"districts": [{"slug": "d"}]})["d"].link_reissued_ids_automatically == ()


def test_users_are_never_linked_automatically(tmp_path):
    with pytest.raises(ConfigError, match=r"\(springfield\): reissued_ids.link_automatically.0: Input should be "
                                          r"'terms' or 'courses'"):
        districts(tmp_path, {"districts": [{"slug": "springfield", "reissued_ids": {"link_automatically": ["users"]}}]})
