"""config/districts.yml has a typed model: one clear message per error (a misspelt key
too), a bad entry hides no other district, and the JSON Schema editors use is current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from clever.catalog import CORE_ENDPOINTS
from clever.config import ConfigError, districts_schema, load_districts, load_districts_tolerant
from clever.paths import REPO_ROOT


def write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "districts.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_each_error_gets_one_message_naming_entry_and_key(tmp_path):
    path = write(tmp_path, {"districts": [
        {"slug": "good"},
        {"slug": "typo", "mass_archive_treshold": 0.2},
        {"slug": "bad", "page_size": 20000, "api_version": "v4", "alerts": {"email": 5}},
        {"slug": "demo\n"},
    ]})
    districts, errors = load_districts_tolerant(path)
    assert [d.slug for d in districts] == ["good"]
    assert errors["typo"].endswith("districts[1] (typo): mass_archive_treshold: unknown key (misspelt?)")
    bad = errors["bad"].split("; ")
    assert [m.split(": ", 2)[-1] for m in bad] == [
        "api_version: Input should be 'v3.0' or 'v3.1'",
        "page_size: Input should be less than or equal to 10000",
        "alerts.email: Input should be a valid string or Input should be a valid list"]
    assert "districts[3] ('demo\\n'): slug: must be lower-case letters" in errors["demo\n"]
    with pytest.raises(ConfigError, match="mass_archive_treshold: unknown key"):
        load_districts(path)


def test_an_error_in_the_defaults_stops_every_district(tmp_path):
    path = write(tmp_path, {"defaults": {"mass_update_threshold": 1.5}, "districts": [{"slug": "a"}]})
    with pytest.raises(ConfigError, match=r"defaults: mass_update_threshold: Input should be less than or equal to 1"):
        load_districts_tolerant(path)


def test_the_shipped_config_is_valid_and_its_schema_is_current():
    assert load_districts(REPO_ROOT / "config" / "districts.yml")
    committed = json.loads((REPO_ROOT / "config" / "districts.schema.json").read_text(encoding="utf-8"))
    assert committed == districts_schema(), "run `make config-schema`"
    entry = committed["$defs"]["DistrictEntryModel"]
    assert entry["required"] == ["slug"] and entry["additionalProperties"] is False
    assert (REPO_ROOT / "config" / "districts.yml").read_text().startswith(
        "# yaml-language-server: $schema=districts.schema.json")


def test_the_model_is_the_one_check_of_values(tmp_path):
    # YAML types its numbers: text or a boolean where a number belongs is a mistake, named.
    path = write(tmp_path, {"districts": [
        {"slug": "text", "mass_archive_floor": "10"},
        {"slug": "flag", "mass_archive_threshold": True},
        {"slug": "mail", "alerts": {"email": ["ops@example.org", "nobody"]}},
        {"slug": "fine", "page_size": None, "schedule": None, "landing_retention_days": None,
         "alerts": {"email": "ops@example.org"}, "mass_archive_threshold": 1, "task_timeout_minutes": {"build": 5}},
    ]})
    districts, errors = load_districts_tolerant(path)
    assert errors["text"].endswith("mass_archive_floor: Input should be a valid integer")
    assert errors["flag"].endswith("mass_archive_threshold: Input should be a valid number")
    assert errors["mail"].endswith("alerts.email.1: String should match pattern '@'")
    (fine,) = districts
    # null where a value is needed takes the default; where null means something, it is kept
    assert (fine.page_size, fine.schedule, fine.landing_retention_days) == (10_000, None, None)
    assert fine.name == "fine" and fine.alerts.email == ("ops@example.org",) and fine.alerts.enabled
    assert fine.mass_archive_threshold == 1.0 and isinstance(fine.mass_archive_threshold, float)
    assert fine.task_timeout_minutes == {"build": 5.0}


def test_defaults_come_from_one_place(tmp_path):
    from clever.catalog import CORE_ENDPOINTS
    from clever.config import DistrictConfig

    (district,) = load_districts(write(tmp_path, {"districts": [{"slug": "plain"}]}))
    assert district == DistrictConfig(slug="plain")
    assert (district.api_version, district.schedule, district.endpoints) == ("v3.0", "@daily", CORE_ENDPOINTS)
    assert (district.mass_archive_threshold, district.mass_update_threshold) == (0.10, 0.75)  # Clever's review


def test_null_in_an_entry_falls_back_to_the_files_defaults(tmp_path):
    path = write(tmp_path, {"defaults": {"mass_archive_threshold": 0.2, "page_size": 500, "schedule": "@hourly"},
                            "districts": [{"slug": "a", "mass_archive_threshold": None, "page_size": None},
                                          {"slug": "b", "schedule": None}]})
    a, b = load_districts(path)
    assert (a.mass_archive_threshold, a.page_size, a.schedule) == (0.2, 500, "@hourly")  # never looser than the file
    assert b.schedule is None  # null that means something (manual only) is kept


def test_an_events_district_runs_on_its_events_schedule_and_is_stale_by_it(tmp_path):
    path = write(tmp_path, {"defaults": {"full_sync_schedule": "0 3 * * 0"}, "districts": [
        {"slug": "daily"},
        {"slug": "hourly", "sync_mode": "events"},
        {"slug": "manual_full", "sync_mode": "events", "events_schedule": "*/15 * * * *", "full_sync_schedule": None},
        {"slug": "typo", "sync_mode": "event"},
    ]})
    districts, errors = load_districts_tolerant(path)
    by_slug = {d.slug: d for d in districts}
    assert (by_slug["daily"].sync_mode, by_slug["daily"].dag_schedule) == ("full", "@daily")
    hourly = by_slug["hourly"]
    assert (hourly.sync_mode, hourly.dag_schedule, hourly.full_sync_schedule) == ("events", "@hourly", "0 3 * * 0")
    assert hourly.stale_limit_hours() == 13  # the events schedule's gap (1 h) + the margin
    assert (hourly.events_retention_days, hourly.events_complete_build_hours) == (30, 24)
    assert by_slug["manual_full"].full_sync_schedule is None  # null: full syncs only on demand or fallback
    assert by_slug["manual_full"].dag_schedule == "*/15 * * * *"
    assert "sync_mode: Input should be 'full' or 'events'" in errors["typo"]


def test_discovered_districts_join_the_config_and_disconnected_ones_lose_their_schedule(tmp_path, monkeypatch):
    from clever.config import load_discovery

    path = write(tmp_path, {
        "discovery": {"enabled": True, "max_disconnect_share": 0.5},
        "defaults": {"schedule": "@daily", "page_size": 500, "disconnect_archive_after_days": 30},
        "districts": [{"slug": "hill", "clever_district_id": "5" * 24, "page_size": 7},
                      {"slug": "by_hand", "disconnect_archive_after_days": None}]})
    registry = tmp_path / "registry.json"
    monkeypatch.setenv("CLEVER_REGISTRY_FILE", str(registry))
    assert [d.slug for d in load_districts(path)] == ["hill", "by_hand"], "no registry file yet: the config alone"

    registry.write_text(json.dumps({"districts": [
        {"slug": "hill", "clever_district_id": "5" * 24, "source": "config", "status": "connected"},
        {"slug": "lakeview", "clever_district_id": "6" * 24, "name": "Lakeview", "source": "discovered",
         "status": "connected"},
        {"slug": "gone", "clever_district_id": "7" * 24, "source": "discovered", "status": "disconnected"},
        {"slug": "by_hand", "source": "config", "status": "disconnected"}]}))
    found = {d.slug: d for d in load_districts(path)}
    assert list(found) == ["hill", "by_hand", "lakeview", "gone"]
    assert (found["hill"].page_size, found["lakeview"].page_size) == (7, 500)
    assert (found["lakeview"].source, found["lakeview"].name, found["lakeview"].dag_schedule) == (
        "discovered", "Lakeview", "@daily")
    assert found["gone"].dag_schedule is None and found["by_hand"].dag_schedule is None
    assert found["by_hand"].stale_limit_hours() is None, "a disconnected district is not alerted as stale"
    policies = (found["lakeview"].disconnect_archive_after_days, found["by_hand"].disconnect_archive_after_days)
    assert policies == (30, None)

    registry.write_text("{not json")
    assert [d.slug for d in load_districts(path)] == ["hill", "by_hand"], "a broken file hides no configured district"
    monkeypatch.setenv("CLEVER_DISTRICTS_FILE", str(path))
    assert (load_discovery().enabled, load_discovery().max_disconnect_share, load_discovery().disconnect_floor) == (
        True, 0.5, 3)


def test_schedules_are_presets_or_cron_expressions(tmp_path):
    # A typo would otherwise surface as a DAG import error, or a district that never runs.
    path = write(tmp_path, {"districts": [
        {"slug": "cron", "schedule": "30 2 * * 1-5"},
        {"slug": "preset", "schedule": "@weekly"},
        {"slug": "events_typo", "sync_mode": "events", "events_schedule": "@hourlyy"},
        {"slug": "full_typo", "sync_mode": "events", "full_sync_schedule": "0 3 * *"},
        {"slug": "daily_typo", "schedule": "every day"},
    ]})
    districts, errors = load_districts_tolerant(path)
    assert {d.slug: d.dag_schedule for d in districts} == {"cron": "30 2 * * 1-5", "preset": "@weekly"}
    assert "events_schedule: Value error, '@hourlyy' is neither a cron expression nor one of @once" in errors[
        "events_typo"]
    assert "full_sync_schedule: Value error, '0 3 * *' is neither a cron expression" in errors["full_typo"]
    assert "schedule: Value error, 'every day' is neither a cron expression" in errors["daily_typo"]
    with pytest.raises(ConfigError, match="discovery: schedule: Value error, '@often'"):
        from clever.config import load_discovery

        load_discovery(write(tmp_path, {"discovery": {"enabled": True, "schedule": "@often"}, "districts": []}))


def test_discovery_and_disconnect_settings_are_checked(tmp_path):
    from clever.config import load_discovery

    path = write(tmp_path, {"discovery": {"enabled": "yes", "max_disconnect_share": 2}, "districts": [
        {"slug": "a", "clever_district_id": "not-an-id"}, {"slug": "b", "disconnect_after_unauthorized_runs": 0}]})
    districts, errors = load_districts_tolerant(path)
    assert districts == []
    assert "clever_district_id: String should match pattern" in errors["a"]
    assert "disconnect_after_unauthorized_runs: Input should be greater than or equal to 1" in errors["b"]
    with pytest.raises(ConfigError, match="discovery: max_disconnect_share"):
        load_discovery(path)


def test_an_entry_cannot_take_a_registered_district_under_another_slug(tmp_path, monkeypatch):
    path = write(tmp_path, {"districts": [{"slug": "hill", "clever_district_id": "5" * 24}, {"slug": "other"}]})
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"districts": [
        {"slug": "hill_valley", "clever_district_id": "5" * 24, "source": "discovered", "status": "connected"}]}))
    monkeypatch.setenv("CLEVER_REGISTRY_FILE", str(registry))
    districts, errors = load_districts_tolerant(path)
    assert [d.slug for d in districts] == ["other", "hill_valley"]
    assert "already registered as 'hill_valley'; name the entry 'hill_valley'" in errors["hill"]


def test_a_library_district_reads_what_teacher_tokens_can_and_keeps_a_disconnected_teachers_view(tmp_path):
    path = write(tmp_path, {"districts": [
        {"slug": "rostered"},
        {"slug": "lib", "integration": "library"},
        {"slug": "lib_archives", "integration": "library", "library_teacher_archive_after_days": 30},
        {"slug": "lib_schools", "integration": "library", "endpoints": ["users", "schools"]},
        {"slug": "lib_events", "integration": "library", "sync_mode": "events"},
        {"slug": "typo", "integration": "libary"},
    ]})
    districts, errors = load_districts_tolerant(path)
    by_slug = {d.slug: d for d in districts}
    assert by_slug["rostered"].integration == "secure_sync"
    assert by_slug["rostered"].endpoints == ("districts", "schools", "users", "sections", "terms", "courses")
    assert by_slug["lib"].integration == "library"
    assert by_slug["lib"].endpoints == ("districts", "users", "sections")
    assert by_slug["lib"].library_teacher_archive_after_days is None  # default: keep the teacher's last view
    assert by_slug["lib_archives"].library_teacher_archive_after_days == 30
    assert "cannot read schools" in errors["lib_schools"]
    assert "sync_mode: events needs Clever's Events API" in errors["lib_events"]
    assert "integration: Input should be 'secure_sync', 'sso' or 'library'" in errors["typo"]


def test_an_sso_district_reads_what_a_district_sso_token_can_and_matches_users_by_clever_id_then_email(tmp_path):
    path = write(tmp_path, {"districts": [
        {"slug": "rostered"},
        {"slug": "sso", "integration": "sso"},
        {"slug": "sso_ordered", "integration": "sso", "matching": {"users": ["email", "clever_id"]}},
    ]})
    rostered, sso, ordered = load_districts(path)
    assert (rostered.integration, rostered.endpoints) == ("secure_sync", CORE_ENDPOINTS)
    assert rostered.matching.rules["users"] == ("clever_id", "sis_id", "state_id", "email", "name_school")
    assert (sso.integration, sso.endpoints) == ("sso", ("districts", "users"))
    assert sso.matching.rules["users"] == ("clever_id", "email")
    assert sso.matching.rules["districts"] == rostered.matching.rules["districts"]
    assert ordered.matching.rules["users"] == ("email", "clever_id")  # configurable as for any district


def test_an_sso_district_asking_for_rosters_or_events_is_a_config_error_naming_it(tmp_path):
    path = write(tmp_path, {"defaults": {"endpoints": ["districts", "schools", "users", "sections"]}, "districts": [
        {"slug": "rostered"},
        {"slug": "own_list", "integration": "sso", "endpoints": ["users", "terms"]},
        {"slug": "inherited", "integration": "sso"},
        {"slug": "fixed", "integration": "sso", "endpoints": ["districts", "users"]},
        {"slug": "by_events", "integration": "sso", "endpoints": ["users"], "sync_mode": "events"},
        {"slug": "unknown", "integration": "sso_plus"},
    ]})
    districts, errors = load_districts_tolerant(path)
    assert [(d.slug, d.endpoints) for d in districts] == [
        ("rostered", ("districts", "schools", "users", "sections")), ("fixed", ("districts", "users"))]
    assert errors["own_list"].endswith(
        "districts[1] (own_list): endpoints: an sso district's token cannot read terms (Clever answers 403 "
        "\"Resource not in token's scopes\" without Secure Sync); list only districts, users (the default), or set "
        "integration: secure_sync")
    assert "districts[2] (inherited): endpoints (from defaults: give this district its own): an sso district's " \
           "token cannot read schools, sections" in errors["inherited"]
    assert errors["by_events"].endswith("districts[4] (by_events): sync_mode: events needs Clever's Events API, "
                                        "which only Secure Sync apps can read; an sso district syncs with "
                                        "sync_mode: full")
    assert errors["unknown"].endswith("integration: Input should be 'secure_sync', 'sso' or 'library'")
    schema = districts_schema()["$defs"]["DistrictSettingsModel"]["properties"]["integration"]
    assert schema["anyOf"][0]["enum"] == ["secure_sync", "sso", "library"]
