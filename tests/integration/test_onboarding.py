"""Onboarding from Clever's token list, disconnects and reconnects (clever.discovery,
clever.registry): against the simulator's GET /oauth/tokens and a real warehouse, with
the pipeline's steps in this process (tests/e2e/test_onboarding_e2e.py runs the DAGs)."""

from __future__ import annotations

import json
from dataclasses import replace

import psycopg
import pytest
import yaml

from clever import registry, steps
from clever.config import DiscoverySettings, load_discovery, load_districts_tolerant, registry_file
from clever.connections import AppCredentials, CleverEndpoint, WarehouseTarget
from clever.dag_factory import build_district_dag
from clever.discovery import discover, slug_for
from clever_devkit.sample_district import generate
from clever_devkit.simulator import CleverSimulator
from tests.conftest import DEMO_TOKEN
from tests.helpers import WebhookReceiver

APP = ("app-client-id", "app-client-secret-do-not-log")
TOKENS = {"lakeview": "lakeview-token-3a1f", "hill": "hill-valley-token-8b2e"}


@pytest.fixture
def webhook(monkeypatch):
    hook = WebhookReceiver()
    monkeypatch.setenv("AIRFLOW_CONN_CLEVER_ALERTS_WEBHOOK", hook.connection())
    yield hook
    hook.close()


@pytest.fixture
def fleet(tmp_path, monkeypatch, district_dir):
    """Three districts served with an application client: demo (the sample, configured by
    hand and synced), lakeview (found by discovery) and hill (configured by hand with its
    Clever id and its own page size)."""
    dirs = {"lakeview": tmp_path / "lakeview", "hill": tmp_path / "hill"}
    generate(dirs["lakeview"], students=120, seed=11, district_name="Lakeview Unified")
    generate(dirs["hill"], students=120, seed=12, district_name="Hill Valley ISD")
    sim = CleverSimulator({"demo": (DEMO_TOKEN, district_dir), **{s: (TOKENS[s], d) for s, d in dirs.items()}},
                          app_credentials=APP)
    sim.start()
    config = tmp_path / "districts.yml"
    config.write_text(yaml.safe_dump({
        "discovery": {"enabled": True, "max_disconnect_share": 0.5, "disconnect_floor": 0},
        "defaults": {"alerts": {"webhook_conn_id": "clever_alerts_webhook"}},
        "districts": [{"slug": "demo"}, {"slug": "hill", "clever_district_id": sim.district_id("hill"),
                                          "page_size": 7}]}))
    monkeypatch.setenv("CLEVER_DISTRICTS_FILE", str(config))
    monkeypatch.setenv("CLEVER_REGISTRY_FILE", str(tmp_path / "state" / "district_registry.json"))
    try:
        yield sim
    finally:
        sim.stop()


class TokenStore(dict):
    """Stands in for Airflow's Variables (the e2e test stores them in Airflow)."""

    def __init__(self, failing: str | None = None):
        super().__init__()
        self.failing = failing

    def __call__(self, slug: str, token: str) -> bool:
        if slug == self.failing:
            raise RuntimeError(f"the secrets store refused {token}")
        changed = self.get(slug) != token
        self[slug] = token
        return changed


def run_discovery(url: str, sim: CleverSimulator, store: TokenStore, settings: DiscoverySettings | None = None,
                  **kwargs):
    app = AppCredentials(sim.base_url, sim.base_url, *APP)
    return discover(url, app, settings or load_discovery(), load_districts_tolerant()[0], store, **kwargs)


def districts() -> dict:
    return {d.slug: d for d in load_districts_tolerant()[0]}


def sync(url: str, district, base_url: str, token: str, **params) -> int:
    ctx = steps.SyncContext(target=WarehouseTarget.from_conninfo(url), district=district,
                            params=steps.RunParams(**params), api=CleverEndpoint(base_url, token))
    return steps.run_sync(ctx, skip=frozenset({"validate"})).run_id


def test_discovery_onboards_new_districts_and_keeps_tokens_out_of_the_warehouse(synced_warehouse_url, fleet,
                                                                                 webhook, tmp_path):
    url, store = synced_warehouse_url, TokenStore()
    result = run_discovery(url, fleet, store)

    assert result.listed == 3 and result.onboarded == ["lakeview_unified"]
    assert store == {"demo": DEMO_TOKEN, "hill": TOKENS["hill"], "lakeview_unified": TOKENS["lakeview"]}
    found = districts()
    # the hand entry wins for its settings; demo, synced by hand, is recognised by its district record
    assert (found["hill"].source, found["hill"].page_size) == ("config", 7)
    assert found["lakeview_unified"].source == "discovered"
    assert found["lakeview_unified"].name == "Lakeview Unified"
    assert found["lakeview_unified"].clever_district_id == fleet.district_id("lakeview")
    assert sorted(found) == ["demo", "hill", "lakeview_unified"]
    assert build_district_dag(found["lakeview_unified"]).schedule == "@daily"
    assert [post["text"].splitlines()[0] for post in webhook.posts] == [
        "*[clever-warehouse] lakeview_unified: onboarded*"]

    with psycopg.connect(url) as conn:
        stored = json.dumps(conn.execute("SELECT json_agg(c) FROM clever_landing.district_connections c").fetchone())
        rows = conn.execute("SELECT district_slug, source, status, token_listed FROM "
                            "clever_landing.district_connections ORDER BY 1").fetchall()
    assert rows == [("demo", "config", "connected", True), ("hill", "config", "connected", True),
                    ("lakeview_unified", "discovered", "connected", True)]
    registry_text = (tmp_path / "state" / "district_registry.json").read_text()
    for secret in (*TOKENS.values(), DEMO_TOKEN, APP[1]):
        assert secret not in stored and secret not in registry_text

    again = run_discovery(url, fleet, store)
    assert (again.onboarded, again.reconnected, again.disconnected) == ([], [], [])
    assert len(webhook.posts) == 1, "nothing changed: no alert"

    # the discovered district syncs with the token discovery stored
    run_id = sync(url, found["lakeview_unified"], fleet.base_url, store["lakeview_unified"])
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM clever_marts.dim_users WHERE district_slug = 'lakeview_unified' "
                            "AND NOT is_archived").fetchone()[0] > 120
        assert conn.execute("SELECT status FROM clever_landing.sync_runs WHERE sync_run_id = %s",
                            (run_id,)).fetchone() == ("completed",)


def test_a_district_that_leaves_the_token_list_is_disconnected_and_reconnects(synced_warehouse_url, fleet,
                                                                              webhook):
    url, store = synced_warehouse_url, TokenStore()
    run_discovery(url, fleet, store)

    fleet.disconnect("lakeview")
    result = run_discovery(url, fleet, store)
    assert result.disconnected == ["lakeview_unified"] and result.held == []
    lakeview = districts()["lakeview_unified"]
    assert lakeview.connection_status == "disconnected"
    dag = build_district_dag(lakeview)
    assert dag.schedule is None and "disconnected" in dag.tags, "a disconnected district's DAG stops scheduling"
    alert = webhook.posts[-1]["text"]
    assert "lakeview_unified: disconnected" in alert and "no longer in Clever's token list" in alert
    assert registry.connection(url, "lakeview_unified")["reason"] == "token_revoked"

    fleet.reconnect("lakeview", token="lakeview-new-token-5c")
    result = run_discovery(url, fleet, store)
    assert result.reconnected == ["lakeview_unified"]
    assert store["lakeview_unified"] == "lakeview-new-token-5c", "the new token is stored"
    assert build_district_dag(districts()["lakeview_unified"]).schedule == "@daily"
    assert "lakeview_unified: reconnected" in webhook.posts[-1]["text"]
    with psycopg.connect(url) as conn:
        events = conn.execute("SELECT event, reason FROM clever_landing.district_connection_events "
                              "WHERE district_slug = 'lakeview_unified' ORDER BY event_id").fetchall()
    assert [e for e, _ in events] == ["onboarded", "disconnected", "reconnected"]


def test_many_districts_leaving_at_once_are_held_until_allowed(synced_warehouse_url, fleet, webhook):
    url, store = synced_warehouse_url, TokenStore()
    run_discovery(url, fleet, store)
    fleet.disconnect("lakeview")
    fleet.disconnect("hill")

    held = run_discovery(url, fleet, store)  # 2 of 3 > half of them: an empty or cut list must not switch off
    assert held.held == ["hill", "lakeview_unified"] and held.disconnected == []
    assert {d.slug: d.connection_status for d in districts().values()} == {
        "demo": "connected", "hill": "connected", "lakeview_unified": "connected"}
    assert "disconnect held" in webhook.posts[-1]["text"]

    allowed = run_discovery(url, fleet, store, allow_mass_disconnect=True)
    assert allowed.disconnected == ["hill", "lakeview_unified"]
    assert districts()["hill"].connection_status == "disconnected"


def test_consecutive_unauthorized_runs_disconnect_and_a_working_read_reconnects(synced_warehouse_url, simulator,
                                                                                 webhook):
    url = synced_warehouse_url
    demo = replace(districts_from_sample(), alerts=replace(districts_from_sample().alerts,
                                                           webhook_conn_id="clever_alerts_webhook"))
    simulator.revoke("demo")
    for attempt in (1, 2):
        with pytest.raises(Exception, match="401"):
            sync(url, demo, simulator.base_url, DEMO_TOKEN)
        row = registry.connection(url, "demo")
        assert (row["unauthorized_runs"], row["status"]) == (attempt, "connected" if attempt == 1 else "disconnected")
    assert row["reason"] == "unauthorized"
    assert "demo: disconnected" in webhook.posts[-1]["text"] and "401/403" in webhook.posts[-1]["text"]
    saved = json.loads(registry_file().read_text())["districts"]
    assert [(d["slug"], d["status"]) for d in saved] == [("demo", "disconnected")]

    simulator.reset()  # the district's token is fixed: a run triggered by hand reads again
    sync(url, demo, simulator.base_url, DEMO_TOKEN)
    row = registry.connection(url, "demo")
    assert (row["status"], row["unauthorized_runs"]) == ("connected", 0)
    assert "demo: reconnected" in webhook.posts[-1]["text"]


def districts_from_sample():
    from clever.config import get_district

    return get_district("demo")


def test_the_disconnect_policy_archives_everything_and_a_reconnect_restores_it(synced_warehouse_url, simulator):
    url = synced_warehouse_url
    keep = districts_from_sample()
    demo = replace(keep, disconnect_archive_after_days=0)

    with pytest.raises(registry.ArchiveRefused, match="connected"):  # never a connected district's data
        sync(url, demo, simulator.base_url, DEMO_TOKEN, archive_disconnected=True)
    active = "SELECT count(*) FROM clever_marts.{} WHERE district_slug = 'demo' AND NOT is_archived"
    with psycopg.connect(url) as conn:
        before = {t: conn.execute(active.format(t)).fetchone()[0] for t in ("dim_users", "dim_sections",
                                                                            "dim_terms", "dim_courses")}
    assert min(before.values()) > 0

    simulator.revoke("demo")
    for _ in range(2):
        with pytest.raises(Exception, match="401"):
            sync(url, demo, simulator.base_url, DEMO_TOKEN)
    assert registry.archive_due(url, [keep]) == [], "the default policy keeps everything"
    with psycopg.connect(url) as conn:
        assert {t: conn.execute(active.format(t)).fetchone()[0] for t in before} == before, "nothing archived"
    assert [d.slug for d in registry.archive_due(url, [demo])] == ["demo"]

    with psycopg.connect(url) as conn:
        (failed_run,) = conn.execute("SELECT max(sync_run_id) FROM clever_landing.sync_runs").fetchone()
    assert not registry.mark_archived(url, demo, failed_run), "a run that approved nothing archived nothing"
    assert registry.connection(url, "demo")["archived_at"] is None
    requests_before = simulator.stats()["requests"]
    sync(url, demo, simulator.base_url, "no-token-is-read", archive_disconnected=True)
    assert simulator.stats()["requests"] == requests_before, "the archive run reads nothing from Clever"
    with psycopg.connect(url) as conn:
        assert {t: conn.execute(active.format(t)).fetchone()[0] for t in before} == dict.fromkeys(before, 0)
        assert conn.execute("SELECT count(*) FROM clever_marts.dim_users WHERE district_slug = 'demo' "
                            "AND is_archived").fetchone()[0] == before["dim_users"]
    assert registry.connection(url, "demo")["archived_at"] is not None
    assert registry.archive_due(url, [demo]) == [], "archived once"

    simulator.reset()
    sync(url, demo, simulator.base_url, DEMO_TOKEN)  # reconnected: the next full sync restores every record
    with psycopg.connect(url) as conn:
        assert {t: conn.execute(active.format(t)).fetchone()[0] for t in before} == before
    row = registry.connection(url, "demo")
    assert (row["status"], row["archived_at"]) == ("connected", None)


def test_slugs_from_names_are_dag_safe_and_unique():
    assert slug_for("Hill Valley ISD", "5" * 24, set()) == "hill_valley_isd"
    assert slug_for("Hill Valley ISD", "0123456789abcdef01234567", {"hill_valley_isd"}) == "hill_valley_isd_234567"
    assert slug_for("123 Academy", "a" * 24, set()) == "d_123_academy"
    assert slug_for("!!!", "a" * 24, set()) == "d"


def test_a_district_refused_as_unauthorized_comes_back_only_with_a_new_token(synced_warehouse_url, fleet, webhook):
    url, store = synced_warehouse_url, TokenStore()
    run_discovery(url, fleet, store)
    lakeview = districts()["lakeview_unified"]
    for _ in range(2):  # e.g. a stale hand-made connection: Clever refuses what the run sends
        registry.record_extraction(url, lakeview, "unauthorized")
    assert registry.connection(url, "lakeview_unified")["status"] == "disconnected"

    again = run_discovery(url, fleet, store)  # Clever still lists the same token: no reconnect loop
    assert again.reconnected == [] and districts()["lakeview_unified"].connection_status == "disconnected"
    fleet.reconnect("lakeview", token="lakeview-reissued-token-9d")
    assert run_discovery(url, fleet, store).reconnected == ["lakeview_unified"]


def test_one_failing_district_stops_no_other_and_entries_with_errors_keep_their_district(synced_warehouse_url,
                                                                                          fleet, webhook):
    url = synced_warehouse_url
    store = TokenStore(failing="lakeview_unified")
    everything = load_districts_tolerant()[0]
    hill_id = fleet.district_id("hill")
    configured = [d for d in everything if d.slug != "hill"]  # as if the hill entry had an error
    result = discover(url, AppCredentials(fleet.base_url, fleet.base_url, *APP), load_discovery(), configured, store,
                      claimed=({"hill"}, {hill_id}))
    assert result.failed == [fleet.district_id("lakeview")]
    assert TOKENS["lakeview"] not in json.dumps(result.as_dict())
    assert set(store) == {"demo"}, "the failing district is skipped, the entry with errors not registered"
    with psycopg.connect(url) as conn:
        slugs = [slug for (slug,) in conn.execute("SELECT district_slug FROM clever_landing.district_connections")]
    assert slugs == ["demo"]


def test_scope_refusals_do_not_count_toward_a_disconnect():
    from clever.client import CleverAuthError, CleverScopeError
    from clever.extract import ExtractionError
    from clever.pipeline import token_rejected

    def failed(cause: Exception) -> ExtractionError:
        error = ExtractionError("district 'd', sync run 1: 1 of 6 endpoint(s) failed")
        error.causes = {"sections": cause}
        return error

    assert token_rejected(failed(CleverAuthError("d", "users", "HTTP 401", status=401)))
    assert not token_rejected(failed(CleverScopeError("d", "sections", "HTTP 403: not in scope", status=403)))
    assert not token_rejected(failed(RuntimeError("HTTP 503")))
    assert token_rejected(CleverAuthError("d", "events", "HTTP 401", status=401))
