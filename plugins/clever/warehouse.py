"""Warehouse access: connection strings, the landing schema, and run tracking.

The landing schema ``clever_landing`` holds exactly what Clever returned, one row per
record per sync run, plus two run-tracking tables. Later steps (validation, dbt
snapshots) only ever read an endpoint's rows from a run whose ``endpoint_runs.status``
is ``completed``; that status, not the presence of rows, is what makes an extraction
trustworthy.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from clever.app_schema import ensure_app_schema
from clever.catalog import ENDPOINTS

LANDING_SCHEMA = "clever_landing"

# Serialises DDL from parallel tasks (CREATE ... IF NOT EXISTS is not race-free).
_DDL_LOCK_KEY = 0x0C1E7E12

_RUN_TABLES_DDL = """
CREATE SCHEMA IF NOT EXISTS clever_landing;

CREATE TABLE IF NOT EXISTS clever_landing.sync_runs (
    sync_run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    district_slug    text        NOT NULL,
    api_version      text        NOT NULL,
    status           text        NOT NULL DEFAULT 'started'
                     CHECK (status IN ('started', 'completed', 'failed')),
    endpoints        text[]      NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at      timestamptz,
    error            text,
    external_run_id  text,
    params           jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS sync_runs_district_idx
    ON clever_landing.sync_runs (district_slug, sync_run_id DESC);

CREATE TABLE IF NOT EXISTS clever_landing.endpoint_runs (
    sync_run_id  bigint      NOT NULL REFERENCES clever_landing.sync_runs ON DELETE CASCADE,
    endpoint     text        NOT NULL,
    status       text        NOT NULL DEFAULT 'started'
                 CHECK (status IN ('started', 'completed', 'failed')),
    row_count    bigint      NOT NULL DEFAULT 0,
    page_count   integer     NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    error        text,
    -- Set when landing retention deleted this extraction's rows (clever.retention);
    -- the rows it kept are those the warehouse still reads.
    pruned_at    timestamptz,
    pruned_rows  bigint,
    PRIMARY KEY (sync_run_id, endpoint)
);
-- Warehouses created before retention: add its columns (checked first, so that the
-- usual case takes no lock that would queue behind a reader of the table).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'clever_landing'
                   AND table_name = 'endpoint_runs' AND column_name = 'pruned_at') THEN
        ALTER TABLE clever_landing.endpoint_runs ADD COLUMN pruned_at timestamptz, ADD COLUMN pruned_rows bigint;
    END IF;
END $$;

-- The extraction each snapshot reads, per district and endpoint (latest approved_at
-- wins). Written only after a run's extraction completed and passed validation and
-- the mass-archive guard; kept as a log so history can say when each run was used.
CREATE TABLE IF NOT EXISTS clever_landing.approved_extractions (
    district_slug  text        NOT NULL,
    endpoint       text        NOT NULL,
    sync_run_id    bigint      NOT NULL REFERENCES clever_landing.sync_runs,
    synced_at      timestamptz NOT NULL,
    approved_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (district_slug, endpoint, sync_run_id)
);

-- The latest approved extraction per district and endpoint (what approved_extractions
-- would give with max(sync_run_id): approve refuses a run older than one approved),
-- kept by a trigger on approved_extractions, so readers (the staging views, the marts'
-- last_seen_at) read a row per district and endpoint instead of the whole log.
CREATE TABLE IF NOT EXISTS clever_landing.current_extractions (
    district_slug  text        NOT NULL,
    endpoint       text        NOT NULL,
    sync_run_id    bigint      NOT NULL,
    synced_at      timestamptz NOT NULL,
    approved_at    timestamptz NOT NULL,
    PRIMARY KEY (district_slug, endpoint)
);
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = 'clever_landing' AND p.proname = 'track_current_extraction') THEN
        CREATE FUNCTION clever_landing.track_current_extraction() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN
            INSERT INTO clever_landing.current_extractions AS c
                (district_slug, endpoint, sync_run_id, synced_at, approved_at)
            VALUES (NEW.district_slug, NEW.endpoint, NEW.sync_run_id, NEW.synced_at, NEW.approved_at)
            ON CONFLICT (district_slug, endpoint) DO UPDATE
                SET sync_run_id = EXCLUDED.sync_run_id, synced_at = EXCLUDED.synced_at,
                    approved_at = EXCLUDED.approved_at
                WHERE c.sync_run_id < EXCLUDED.sync_run_id;
            RETURN NULL;
        END $f$;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'approved_extractions_current'
                   AND tgrelid = 'clever_landing.approved_extractions'::regclass) THEN
        CREATE TRIGGER approved_extractions_current AFTER INSERT ON clever_landing.approved_extractions
            FOR EACH ROW EXECUTE FUNCTION clever_landing.track_current_extraction();
        -- a warehouse approved before this table existed
        INSERT INTO clever_landing.current_extractions (district_slug, endpoint, sync_run_id, synced_at, approved_at)
        SELECT DISTINCT ON (district_slug, endpoint) district_slug, endpoint, sync_run_id, synced_at, approved_at
        FROM clever_landing.approved_extractions ORDER BY district_slug, endpoint, sync_run_id DESC
        ON CONFLICT DO NOTHING;
    END IF;
END $$;

-- Records of a run that broke a rule Clever guarantees (missing id, duplicate id,
-- missing guaranteed field, unresolvable guaranteed reference...). Kept with the rule
-- they broke. Snapshots never see a quarantined record: they keep its last good
-- version instead, so quarantine can never archive it.
CREATE TABLE IF NOT EXISTS clever_landing.quarantine (
    sync_run_id    bigint      NOT NULL REFERENCES clever_landing.sync_runs ON DELETE CASCADE,
    endpoint       text        NOT NULL,
    clever_id      text,
    rule           text        NOT NULL,
    detail         text,
    raw            jsonb,
    quarantined_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS quarantine_run_idx ON clever_landing.quarantine (sync_run_id, endpoint, clever_id);

-- Outcome of every Great Expectations expectation a run's extraction was validated with.
CREATE TABLE IF NOT EXISTS clever_landing.validation_results (
    sync_run_id       bigint      NOT NULL REFERENCES clever_landing.sync_runs ON DELETE CASCADE,
    endpoint          text        NOT NULL,
    expectation_type  text        NOT NULL,
    column_name       text        NOT NULL,
    description       text        NOT NULL,
    severity          text        NOT NULL,
    success           boolean     NOT NULL,
    element_count     bigint,
    unexpected_count  bigint      NOT NULL,
    examples          jsonb       NOT NULL DEFAULT '[]'::jsonb,
    validated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS validation_results_run_idx ON clever_landing.validation_results (sync_run_id, endpoint);

-- Per run and endpoint: the suite it was validated with (fingerprint), the extractions
-- its references were resolved in, and how many records were checked: every one, or
-- with a baseline (an earlier approved extraction validated with the same suite) only
-- those new or changed since (clever.validation).
CREATE TABLE IF NOT EXISTS clever_landing.validated_extractions (
    sync_run_id        bigint      NOT NULL REFERENCES clever_landing.sync_runs ON DELETE CASCADE,
    endpoint           text        NOT NULL,
    suite_fingerprint  text        NOT NULL,
    reference_runs     jsonb       NOT NULL,
    records            bigint      NOT NULL,
    records_checked    bigint      NOT NULL,
    baseline_run_id    bigint,
    validated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (sync_run_id, endpoint)
);

-- Mass-archive guard decisions: what a run would have archived, per data type.
CREATE TABLE IF NOT EXISTS clever_landing.guard_checks (
    sync_run_id    bigint      NOT NULL REFERENCES clever_landing.sync_runs ON DELETE CASCADE,
    data_type      text        NOT NULL,
    active_before  bigint      NOT NULL,
    would_archive  bigint      NOT NULL,
    limit_count    bigint      NOT NULL,
    tripped        boolean     NOT NULL,
    overridden     boolean     NOT NULL DEFAULT false,
    checked_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    would_change   bigint,     -- active records the run gives a new version (NULL: not counted)
    change_limit   bigint,
    holds          text[],     -- which holds tripped: archive, change
    PRIMARY KEY (sync_run_id, data_type)
);
-- Each district's freshness limit (hours without an approved extraction before it is
-- stale; NULL: synced by hand), written by every run's start from config/districts.yml,
-- and when a stale-district alert was last sent (clever.health).
CREATE TABLE IF NOT EXISTS clever_landing.district_settings (
    district_slug      text        PRIMARY KEY,
    stale_after_hours  double precision,
    stale_alerted_at   timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Warehouses created before the change hold: add its columns.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'clever_landing'
                   AND table_name = 'guard_checks' AND column_name = 'holds') THEN
        ALTER TABLE clever_landing.guard_checks ADD COLUMN would_change bigint, ADD COLUMN change_limit bigint,
            ADD COLUMN holds text[];
    END IF;
END $$;

-- Each district's matching settings (config/districts.yml `matching:`), written by its
-- sync's build step under the build lock; the dbt matching models read the rule order
-- and confidences from here (one row per district, the last written wins).
CREATE TABLE IF NOT EXISTS clever_landing.match_settings (
    district_slug  text        PRIMARY KEY,
    state          text,
    rules          jsonb       NOT NULL,
    written_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- The data types whose reissued records the district links without review (config
-- `reissued_ids:`), read by rpt_reissued_ids; added to warehouses created before. The
-- catalog is checked first: ALTER TABLE would wait for every build reading the table.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'clever_landing'
                   AND table_name = 'match_settings' AND column_name = 'link_reissued_ids_automatically') THEN
        ALTER TABLE clever_landing.match_settings
            ADD COLUMN link_reissued_ids_automatically text[] NOT NULL DEFAULT '{}';
    END IF;
END $$;

-- Events (clever.events): a run is a full sync (every record of every endpoint) or an
-- events run (what Clever's Events API lists since the district's cursor). events_from is
-- the cursor an events run read after; events_to the last event it landed, or for a full
-- sync the latest event when it started (where the next events run begins). mode_reason
-- says why a run of an events district is a full sync.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'clever_landing'
                   AND table_name = 'sync_runs' AND column_name = 'mode') THEN
        ALTER TABLE clever_landing.sync_runs ADD COLUMN mode text NOT NULL DEFAULT 'full'
                CHECK (mode IN ('full', 'events')),
            ADD COLUMN mode_reason text, ADD COLUMN events_from text, ADD COLUMN events_to text;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'clever_landing'
                   AND table_name = 'current_extractions' AND column_name = 'base_run_id') THEN
        -- base_run_id, base_synced_at: the full extraction the records come from;
        -- sync_run_id, synced_at: the latest approval (an events run's too);
        -- events_cursor: the last event the records reflect.
        ALTER TABLE clever_landing.current_extractions ADD COLUMN base_run_id bigint,
            ADD COLUMN base_synced_at timestamptz, ADD COLUMN events_cursor text;
        UPDATE clever_landing.current_extractions SET base_run_id = sync_run_id, base_synced_at = synced_at;
        ALTER TABLE clever_landing.current_extractions ALTER COLUMN base_run_id SET NOT NULL,
            ALTER COLUMN base_synced_at SET NOT NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = 'clever_landing' AND p.proname = 'track_current_extraction'
                     AND p.prosrc LIKE '%base_run_id%') THEN
        CREATE OR REPLACE FUNCTION clever_landing.track_current_extraction() RETURNS trigger
        LANGUAGE plpgsql AS $f$
        DECLARE
            run record;
        BEGIN
            SELECT mode, events_to INTO run FROM clever_landing.sync_runs WHERE sync_run_id = NEW.sync_run_id;
            INSERT INTO clever_landing.current_extractions AS c
                (district_slug, endpoint, sync_run_id, synced_at, approved_at, base_run_id, base_synced_at,
                 events_cursor)
            VALUES (NEW.district_slug, NEW.endpoint, NEW.sync_run_id, NEW.synced_at, NEW.approved_at,
                    NEW.sync_run_id, NEW.synced_at, run.events_to)
            ON CONFLICT (district_slug, endpoint) DO UPDATE
                SET sync_run_id = EXCLUDED.sync_run_id, synced_at = EXCLUDED.synced_at,
                    approved_at = EXCLUDED.approved_at, events_cursor = EXCLUDED.events_cursor,
                    -- an events run changes records on top of the full extraction it follows
                    base_run_id = CASE WHEN run.mode = 'events' THEN c.base_run_id ELSE EXCLUDED.base_run_id END,
                    base_synced_at = CASE WHEN run.mode = 'events' THEN c.base_synced_at
                                          ELSE EXCLUDED.base_synced_at END
                WHERE c.sync_run_id < EXCLUDED.sync_run_id;
            RETURN NULL;
        END $f$;
    END IF;
END $$;

-- Integrations (clever.integrations): each run records what the district's app receives
-- (secure_sync, sso or library), and so which suites validate it; district_settings keeps the
-- district's current one for the BI views. An endpoint of an sso run that Clever refuses
-- as outside the token's scope is 'out_of_scope': not read, not approved, not a failure.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'clever_landing'
                   AND table_name = 'sync_runs' AND column_name = 'integration') THEN
        ALTER TABLE clever_landing.sync_runs ADD COLUMN integration text NOT NULL DEFAULT 'secure_sync';
        ALTER TABLE clever_landing.district_settings ADD COLUMN integration text;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'clever_landing.endpoint_runs'::regclass
                   AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%out_of_scope%') THEN
        ALTER TABLE clever_landing.endpoint_runs DROP CONSTRAINT IF EXISTS endpoint_runs_status_check,
            ADD CONSTRAINT endpoint_runs_status_check
                CHECK (status IN ('started', 'completed', 'failed', 'out_of_scope'));
    END IF;
END $$;

-- Every event an events run read, as Clever sent it, page by page (COPY).
CREATE TABLE IF NOT EXISTS clever_landing.events (
    sync_run_id   bigint      NOT NULL,
    event_id      text        NOT NULL,
    event_type    text,
    endpoint      text,
    action        text,
    clever_id     text,
    raw           jsonb       NOT NULL,
    extracted_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run_idx ON clever_landing.events (sync_run_id, event_id);

-- Per events run, the last event of each record it changed (created, updated or
-- deleted); a created or updated record's version is its landing row of the run.
CREATE TABLE IF NOT EXISTS clever_landing.event_changes (
    sync_run_id  bigint NOT NULL REFERENCES clever_landing.sync_runs ON DELETE CASCADE,
    endpoint     text   NOT NULL,
    clever_id    text   NOT NULL,
    action       text   NOT NULL CHECK (action IN ('created', 'updated', 'deleted')),
    event_id     text   NOT NULL,
    PRIMARY KEY (sync_run_id, endpoint, clever_id)
);

-- The records approved events runs changed since the district's current full extraction
-- (current_extractions.base_run_id), each with the run holding its latest version, or
-- deleted. The staging views read these over the full extraction; a full sync's approval
-- clears them.
CREATE TABLE IF NOT EXISTS clever_landing.applied_changes (
    district_slug  text        NOT NULL,
    endpoint       text        NOT NULL,
    clever_id      text        NOT NULL,
    sync_run_id    bigint      NOT NULL,
    deleted        boolean     NOT NULL,
    synced_at      timestamptz NOT NULL,
    PRIMARY KEY (district_slug, endpoint, clever_id)
);
CREATE INDEX IF NOT EXISTS applied_changes_run_idx
    ON clever_landing.applied_changes (district_slug, endpoint, sync_run_id);

-- Every district's connection to the application (clever.registry): found in Clever's
-- token list by discovery (source 'discovered') or configured by hand ('config'), and
-- whether it is connected. Never a token: those live in Airflow.
CREATE TABLE IF NOT EXISTS clever_landing.district_connections (
    district_slug       text        PRIMARY KEY,
    clever_district_id  text        UNIQUE,
    name                text,
    source              text        NOT NULL CHECK (source IN ('discovered', 'config')),
    status              text        NOT NULL DEFAULT 'connected' CHECK (status IN ('connected', 'disconnected')),
    -- why it is disconnected: 'token_revoked' (gone from Clever's token list) or
    -- 'unauthorized' (Clever answered 401/403 on consecutive runs)
    reason              text,
    token_listed        boolean,    -- in Clever's token list at the last discovery (NULL: not checked)
    unauthorized_runs   integer     NOT NULL DEFAULT 0,
    first_seen_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    connected_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    disconnected_at     timestamptz,
    -- the disconnect policy's run that archived every record, and when (cleared on reconnect)
    archived_at         timestamptz,
    archive_sync_run_id bigint,
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Connection changes, for alerts and the history BI shows.
CREATE TABLE IF NOT EXISTS clever_landing.district_connection_events (
    event_id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    district_slug  text        NOT NULL,
    event          text        NOT NULL CHECK (event IN ('onboarded', 'disconnected', 'reconnected', 'archived',
                                                         'disconnect_held')),
    reason         text,
    happened_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS district_connection_events_idx
    ON clever_landing.district_connection_events (district_slug, event_id DESC);

-- One row per finished sync run: what it landed, archived, restored, and how long it took.
CREATE TABLE IF NOT EXISTS clever_landing.run_summaries (
    sync_run_id    bigint      PRIMARY KEY REFERENCES clever_landing.sync_runs ON DELETE CASCADE,
    district_slug  text        NOT NULL,
    status         text        NOT NULL,
    summary        jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""

_LANDING_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS clever_landing.{table} (
    sync_run_id   bigint      NOT NULL,
    district_id   text,
    clever_id     text,
    api_version   text        NOT NULL,
    raw           jsonb       NOT NULL,
    extracted_at  timestamptz NOT NULL,
    is_partial    boolean     NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS {index} ON clever_landing.{table} (sync_run_id, clever_id);
"""


def landing_table(endpoint: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(LANDING_SCHEMA), sql.Identifier(endpoint))


def ensure_landing_schema(conn: psycopg.Connection) -> None:
    """Create the landing schema and run-tracking tables if missing (idempotent), and the
    application's schema ``app``, which dbt reads as sources."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        conn.execute(_RUN_TABLES_DDL)
        for endpoint in ENDPOINTS:
            conn.execute(_LANDING_TABLE_DDL.format(table=endpoint, index=f"{endpoint}_run_idx"))
    ensure_app_schema(conn)
