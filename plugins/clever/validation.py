"""Validation of a run's landed records with Great Expectations, before anything is approved.

For every endpoint the run completed:

1. one pass over its landing rows writes a flattened, unlogged copy with exactly the
   columns its suite needs (``clever.expectations`` defines the column grammar);
2. GX runs the endpoint's suite (expectations/<version>/<endpoint>.json, or for an
   integration's cut-down records, an sso district's users or a Library district's users
   and sections, expectations/<version>/<integration>/<endpoint>.json) on that table
   inside PostgreSQL, so a million users never pass through Python, and builds Data Docs
   for the run;
3. every record that breaks a critical rule is quarantined: kept in
   clever_landing.quarantine with the rule it broke and its raw JSON. Staging then uses
   the record's last clean version, so a quarantined record is never archived as if
   Clever had deleted it. Warnings are reported only.

The run stops (nothing approved, nothing archived) if an endpoint quarantines more than
the district allows, because that means something systemic (a Clever schema change, a
broken extraction), not a few bad records. Every expectation's outcome is kept in
clever_landing.validation_results.

Only what can have changed is checked. When the district's approved extraction of an
endpoint was validated with the same suite (its baseline), a record identical to the
baseline's record with the same Clever ID passed (or was quarantined) then and would
again, so step 1 copies only the records that are new or changed, were quarantined in
the baseline, share their ID with another record of the run, or refer to a record that
has since disappeared. A quiet day of a million-user district checks thousands of
records, not a million. Without a baseline (the first sync, a new suite, or
``full=True``, the DAG's full_refresh) every record is checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from clever.expectations import ColumnSpec, SuiteError, load_suite_document, parse_column
from clever.runs import completed_endpoints, get_sync_run, pruned_endpoints, run_mode
from clever.warehouse import landing_table

log = logging.getLogger(__name__)

VALIDATION_SCHEMA = "clever_validation"
_EXAMPLES = 5
# Part of every suite's fingerprint: bump when the flattening or quarantine SQL changes
# what a suite means, so that no earlier validation is taken as a baseline.
_VALIDATION_LOGIC = 1


class ValidationFailed(RuntimeError):
    """A run's data is unsafe to snapshot; nothing from it is approved."""


@dataclass
class EndpointOutcome:
    endpoint: str
    records: int  # landed by the run
    checked: int  # of which validated (new or changed since the baseline, see the module doc)
    baseline_run_id: int | None = None
    quarantined: int = 0
    failed_rules: dict[str, int] = field(default_factory=dict)  # description -> unexpected rows
    warnings: dict[str, int] = field(default_factory=dict)


def data_docs_index(district_slug: str, sync_run_id: int) -> Path:
    """Where a run's GX Data Docs are built."""
    from clever.dbt_runner import ARTIFACTS_DIR

    return ARTIFACTS_DIR / "data_docs" / district_slug / f"run_{sync_run_id}" / "index.html"


def quarantine_limit(records: int, threshold: float, floor: int) -> int:
    return max(floor, math.floor(records * threshold))


# -- flattening ---------------------------------------------------------------------------------------
def _path(spec: ColumnSpec) -> sql.Composable:
    return sql.Literal("{" + ",".join(spec.path) + "}")


REFERENCE_KINDS = ("resolves_to", "all_resolve_to")
# References are checked by one hash of the referenced extraction once the IDs to check
# reach a tenth of its records: measured at a million students, an index probe per ID
# cost about 6 us, a hash 0.4 us per referenced record to build and 1 us per ID to probe.
_HASH_WHEN_IDS_PER_REFERENCED = 10


def column_expression(spec: ColumnSpec, unresolved: sql.Composable | None = None) -> sql.Composable:
    """SQL computing one validation column from landing row ``l``; a reference column
    reads ``unresolved``, the landing rows with a reference that does not resolve
    (:func:`unresolved_references`)."""
    if spec.kind == "clever_id":
        return sql.SQL("l.clever_id")
    value = sql.SQL("(l.raw #> {})").format(_path(spec))
    if spec.kind == "json_type":
        return sql.SQL("coalesce(jsonb_typeof({}), 'missing')").format(value)
    if spec.kind == "text":
        return sql.SQL("(l.raw #>> {})").format(_path(spec))
    if spec.kind == "all_strings":
        return sql.SQL("""CASE WHEN jsonb_typeof({v}) = 'array'
                          THEN NOT jsonb_path_exists({v}, '$[*] ? (@.type() != "string")') END""").format(v=value)
    if spec.kind in REFERENCE_KINDS and unresolved is not None:
        return sql.SQL("""CASE WHEN jsonb_typeof({v}) = {json_type}
                          THEN NOT EXISTS (SELECT 1 FROM {u} AS u WHERE u.landing_row = l.ctid) END""").format(
            v=value, json_type=sql.Literal("string" if spec.kind == "resolves_to" else "array"), u=unresolved)
    raise SuiteError(f"no SQL for validation column kind {spec.kind!r}")


@dataclass(frozen=True)
class EventsRun:
    """An events run (clever.events): its records are the changed ones, and a reference
    resolves in the district's records as they will be once the run is applied."""

    district_slug: str
    sync_run_id: int


def unresolved_references(conn: psycopg.Connection, endpoint: str, sync_run_id: int, spec: ColumnSpec,
                          index: int, reference_runs: dict[str, int | None], events: EventsRun | None,
                          subset: sql.Composable) -> sql.Composable:
    """A temp table of the run's landing rows (``landing_row``, their ctid) with an ID in
    ``spec`` that names no record of the referenced endpoint: none in the extraction
    references resolve in, or for an events run, none as that extraction stands with the
    run's changes and the events applied since over it (``reference_overrides``).

    The IDs are taken out of the records first, into a temp table with its own
    statistics, then looked up in one statement: a changed day's sections carry over a
    million roster IDs, and the run's landing rows are new to the landing table's
    statistics. Planned together, PostgreSQL took them for one row and hashed the whole
    referenced extraction again for each. ``spec`` is named by its position in the suite's
    columns (``index``), as its own name may not fit an identifier."""
    value = sql.SQL("(l.raw #> {})").format(_path(spec))
    if spec.kind == "resolves_to":
        ids = sql.SQL("(SELECT {v} #>> '{{}}' WHERE jsonb_typeof({v}) = 'string')").format(v=value)
    else:
        ids = sql.SQL("jsonb_array_elements_text(CASE WHEN jsonb_typeof({v}) = 'array' THEN {v} END)").format(
            v=value)
    base = reference_runs.get(spec.references)
    overrides, resolved = sql.SQL(""), sql.SQL("b.clever_id IS NOT NULL")
    if events is not None:
        overrides = sql.SQL("LEFT JOIN {} AS o ON o.clever_id = m.id").format(
            reference_overrides(conn, spec.references, base, events))
        resolved = sql.SQL("coalesce(o.alive, b.clever_id IS NOT NULL)")
    referenced = conn.execute("SELECT row_count FROM clever_landing.endpoint_runs WHERE sync_run_id = %s "
                              "AND endpoint = %s", (base, spec.references)).fetchone()
    found = sql.Identifier(f"reference_ids_{endpoint}_{index}")
    table = sql.Identifier(f"unresolved_{endpoint}_{index}")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}, pg_temp.{}").format(found, table))
    checked = conn.execute(sql.SQL(
        """CREATE TEMP TABLE {found} AS SELECT l.ctid AS landing_row, m.id
           FROM {l} AS l CROSS JOIN LATERAL {ids} AS m(id) WHERE l.sync_run_id = %s {subset}""").format(
        found=found, l=landing_table(endpoint), ids=ids, subset=subset), (sync_run_id,)).rowcount
    conn.execute(sql.SQL("ANALYZE pg_temp.{}").format(found))
    with conn.transaction():
        conn.execute("SET LOCAL jit = off")  # compiling cost more than it saved, at every size
        if referenced and checked * _HASH_WHEN_IDS_PER_REFERENCED >= (referenced[0] or 0):
            # Many IDs: one hash of the referenced extraction. PostgreSQL's own choice was an
            # index probe per ID (7.7 s for 1.3 million roster IDs at a million students,
            # against 2.1 s): its costs price reads of cached pages as reads from disk.
            conn.execute("SET LOCAL enable_nestloop = off")
            conn.execute("SET LOCAL enable_mergejoin = off")
        conn.execute(sql.SQL(
            """CREATE TEMP TABLE {table} AS SELECT DISTINCT m.landing_row
               FROM pg_temp.{found} AS m
               LEFT JOIN {r} AS b ON b.sync_run_id = {base} AND b.clever_id = m.id
               {overrides}
               WHERE NOT {resolved}""").format(
            table=table, found=found, r=landing_table(spec.references), base=sql.Literal(base),
            overrides=overrides, resolved=resolved))
    conn.execute(sql.SQL("DROP TABLE pg_temp.{}").format(found))
    conn.execute(sql.SQL("ANALYZE pg_temp.{}").format(table))
    return sql.SQL("pg_temp.{}").format(table)


def reference_overrides(conn: psycopg.Connection, endpoint: str, base_run: int | None,
                        events: EventsRun) -> sql.Composable:
    """For an events run, a temp table of the records of ``endpoint`` whose existence
    differs from the full extraction ``base_run``: the run's changes (``alive`` unless a
    deletion) and, for records the run does not change, the changes applied since."""
    table = sql.Identifier(f"reference_overrides_{endpoint}")
    if conn.execute("SELECT to_regclass(%s)", (f"pg_temp.reference_overrides_{endpoint}",)).fetchone()[0] is None:
        conn.execute(sql.SQL(
            """CREATE TEMP TABLE {table} AS
               SELECT c.clever_id, c.action <> 'deleted' AS alive FROM clever_landing.event_changes AS c
               WHERE c.sync_run_id = %(run)s AND c.endpoint = %(endpoint)s
               UNION ALL
               SELECT a.clever_id, NOT a.deleted FROM clever_landing.applied_changes AS a
               WHERE a.district_slug = %(district)s AND a.endpoint = %(endpoint)s AND a.sync_run_id > %(base)s
                 AND NOT EXISTS (SELECT 1 FROM clever_landing.event_changes AS c
                                 WHERE c.sync_run_id = %(run)s AND c.endpoint = %(endpoint)s
                                   AND c.clever_id = a.clever_id)""").format(table=table),
            {"run": events.sync_run_id, "endpoint": endpoint, "district": events.district_slug, "base": base_run})
        # Looked up by ID: the run's landing rows are new to the table's statistics, so the
        # planner may take them for one row and would then scan this table once per record.
        conn.execute(sql.SQL("CREATE INDEX ON pg_temp.{} (clever_id)").format(table))
        conn.execute(sql.SQL("ANALYZE pg_temp.{}").format(table))
    return sql.SQL("pg_temp.{}").format(table)


def suite_columns(suite: dict[str, Any]) -> list[ColumnSpec]:
    names: dict[str, None] = {"clever_id": None}
    for expectation in suite["expectations"]:
        names[expectation["kwargs"]["column"]] = None
        condition = expectation["kwargs"].get("row_condition")
        if condition:
            names[condition["column"]["name"]] = None
    return [parse_column(n) for n in names]


def validation_table(endpoint: str, sync_run_id: int) -> sql.Identifier:
    return sql.Identifier(VALIDATION_SCHEMA, f"{endpoint}_run_{sync_run_id}")


def flatten(conn: psycopg.Connection, endpoint: str, sync_run_id: int, suite: dict[str, Any],
            reference_runs: dict[str, int | None], baseline: Baseline | None = None,
            events: EventsRun | None = None) -> int:
    """Write the run's flattened copy of ``endpoint`` for its suite (every record, or with
    a baseline the records that may have changed); return its row count."""
    table = validation_table(endpoint, sync_run_id)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    subset = sql.SQL("")
    if baseline is not None:
        select_changed(conn, endpoint, sync_run_id, suite, reference_runs, baseline)
        subset = sql.SQL("AND l.ctid IN (SELECT landing_row FROM pg_temp.changed_records)")
    specs = suite_columns(suite)
    unresolved = {spec.name: unresolved_references(conn, endpoint, sync_run_id, spec, index, reference_runs, events,
                                                   subset)
                  for index, spec in enumerate(specs) if spec.kind in REFERENCE_KINDS}
    columns = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(column_expression(spec, unresolved.get(spec.name)), sql.Identifier(spec.name))
        for spec in specs)
    conn.execute(sql.SQL("CREATE UNLOGGED TABLE {t} AS SELECT l.ctid::text AS landing_row, {c} "
                         "FROM {l} AS l WHERE l.sync_run_id = %s {subset}").format(
        t=table, c=columns, l=landing_table(endpoint), subset=subset), (sync_run_id,))
    conn.execute(sql.SQL("ANALYZE {}").format(table))
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]


# -- what may have changed since the baseline ---------------------------------------------------------
@dataclass(frozen=True)
class Baseline:
    """The approved extraction of an endpoint that was validated with the same suite."""

    sync_run_id: int
    reference_runs: dict[str, int | None]


def suite_fingerprint(suite: dict[str, Any]) -> str:
    document = json.dumps({"suite": suite, "logic": _VALIDATION_LOGIC}, sort_keys=True)
    return hashlib.md5(document.encode("utf-8"), usedforsecurity=False).hexdigest()


def find_baseline(conn: psycopg.Connection, district_slug: str, endpoint: str, sync_run_id: int,
                  fingerprint: str) -> Baseline | None:
    """The district's latest approved full extraction of ``endpoint`` before this run that
    was validated with the same suite (an events run's holds only the records it changed),
    if any, and if neither it nor an extraction it was validated against has been pruned
    by landing retention (what has gone since could not be told)."""
    row = conn.execute(
        """SELECT a.sync_run_id, v.reference_runs,
                  e.pruned_at IS NULL AND NOT EXISTS (
                      SELECT 1 FROM jsonb_each(v.reference_runs) AS ref
                      JOIN clever_landing.endpoint_runs AS r
                        ON r.endpoint = ref.key AND r.sync_run_id = (ref.value #>> '{}')::bigint
                      WHERE jsonb_typeof(ref.value) = 'number' AND r.pruned_at IS NOT NULL) AS intact
           FROM clever_landing.approved_extractions AS a
           JOIN clever_landing.validated_extractions AS v
             ON v.sync_run_id = a.sync_run_id AND v.endpoint = a.endpoint
           JOIN clever_landing.endpoint_runs AS e ON e.sync_run_id = a.sync_run_id AND e.endpoint = a.endpoint
           JOIN clever_landing.sync_runs AS r ON r.sync_run_id = a.sync_run_id AND r.mode = 'full'
           WHERE a.district_slug = %s AND a.endpoint = %s AND a.sync_run_id < %s AND v.suite_fingerprint = %s
           ORDER BY a.sync_run_id DESC LIMIT 1""",
        (district_slug, endpoint, sync_run_id, fingerprint)).fetchone()
    if row is None:
        return None
    if not row[2]:
        log.info("%s: baseline run %d was pruned by landing retention; every record is checked", endpoint, row[0])
        return None
    return Baseline(row[0], {e: (int(r) if r is not None else None) for e, r in row[1].items()})


def gone_ids(conn: psycopg.Connection, endpoint: str, now: int | None, then: int | None) -> sql.Composable | None:
    """A temp table of the Clever IDs in extraction ``then`` of ``endpoint`` that
    extraction ``now`` lacks, or None when there are none."""
    if now == then or now is None or then is None:
        return None
    name = f"gone_{endpoint}_{then}_{now}"
    table = sql.Identifier(name)
    # The same two extractions give the same table: several references (a section's
    # teacher, teachers and students) share it within one validation's session.
    if conn.execute("SELECT to_regclass(%s)", (f"pg_temp.{name}",)).fetchone()[0] is None:
        conn.execute(sql.SQL(
            """CREATE TEMP TABLE {table} AS SELECT DISTINCT g.clever_id FROM {l} AS g
               WHERE g.sync_run_id = %s AND g.clever_id IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM {l} AS n WHERE n.sync_run_id = %s AND n.clever_id = g.clever_id)"""
        ).format(table=table, l=landing_table(endpoint)), (then, now))
        conn.execute(sql.SQL("ANALYZE pg_temp.{}").format(table))
    if not conn.execute(sql.SQL("SELECT count(*) FROM pg_temp.{}").format(table)).fetchone()[0]:
        return None
    return sql.SQL("pg_temp.{}").format(table)


def select_changed(conn: psycopg.Connection, endpoint: str, sync_run_id: int, suite: dict[str, Any],
                   reference_runs: dict[str, int | None], baseline: Baseline) -> int:
    """Fill pg_temp.changed_records with the landing rows (ctid) of the run that may not
    pass as their baseline twins did; return how many.

    A row is left out only when a record with the same Clever ID and the same JSON is in
    the baseline, was not quarantined there, no other row of the run has its ID, and none
    of the references its suite checks points at a record that has gone from the
    referenced extraction since the baseline (a student whose school was unshared must
    fail again). Everything else in the suite looks at the record alone."""
    landing = landing_table(endpoint)
    params = {"run": sync_run_id, "baseline": baseline.sync_run_id, "endpoint": endpoint}
    conn.execute("DROP TABLE IF EXISTS pg_temp.changed_records")
    parts = [part.format(l=landing) for part in (
        # new, changed, or without an id (the anti-join finds no twin)
        # (IS NOT DISTINCT FROM: raw is never NULL, and this way only clever_id is hashed)
        sql.SQL("""SELECT l.ctid FROM {l} AS l WHERE l.sync_run_id = %(run)s AND NOT EXISTS (
                       SELECT 1 FROM {l} AS b WHERE b.sync_run_id = %(baseline)s AND b.clever_id = l.clever_id
                                                AND b.raw IS NOT DISTINCT FROM l.raw)"""),
        # quarantined in the baseline: judged again, the same way
        sql.SQL("""SELECT l.ctid FROM {l} AS l
                   JOIN (SELECT DISTINCT clever_id FROM clever_landing.quarantine
                         WHERE sync_run_id = %(baseline)s AND endpoint = %(endpoint)s) AS q USING (clever_id)
                   WHERE l.sync_run_id = %(run)s"""),
        # an id the run holds twice: every copy, so the uniqueness rule sees them all
        sql.SQL("""SELECT l.ctid FROM {l} AS l
                   JOIN (SELECT clever_id FROM {l} WHERE sync_run_id = %(run)s AND clever_id IS NOT NULL
                         GROUP BY clever_id HAVING count(*) > 1) AS d USING (clever_id)
                   WHERE l.sync_run_id = %(run)s"""),
    )]
    for spec in suite_columns(suite):
        if spec.kind not in ("resolves_to", "all_resolve_to"):
            continue
        gone = gone_ids(conn, spec.references, reference_runs.get(spec.references),
                        baseline.reference_runs.get(spec.references))
        if gone is None:
            continue
        value = sql.SQL("l.raw #> {}").format(_path(spec))
        if spec.kind == "resolves_to":
            refers = sql.SQL("JOIN {gone} AS g ON g.clever_id = ({v} #>> '{{}}')").format(gone=gone, v=value)
        else:  # every ID of the array, joined by hash (any number of gone records)
            refers = sql.SQL("""CROSS JOIN LATERAL jsonb_array_elements_text(
                                    CASE WHEN jsonb_typeof({v}) = 'array' THEN {v} END) AS m(id)
                                JOIN {gone} AS g ON g.clever_id = m.id""").format(gone=gone, v=value)
        parts.append(sql.SQL("SELECT l.ctid FROM {l} AS l {refers} WHERE l.sync_run_id = %(run)s").format(
            l=landing, refers=refers))
    query = sql.SQL("CREATE TEMP TABLE changed_records AS SELECT DISTINCT ctid AS landing_row FROM ({}) AS c").format(
        sql.SQL(" UNION ALL ").join(parts))
    conn.execute(query, params)
    conn.execute("ANALYZE pg_temp.changed_records")
    return conn.execute("SELECT count(*) FROM pg_temp.changed_records").fetchone()[0]


# -- quarantine -------------------------------------------------------------------------------------
def _condition_sql(kwargs: dict[str, Any]) -> sql.Composable:
    condition = kwargs.get("row_condition")
    if not condition:
        return sql.SQL("true")
    if condition.get("type") != "comparison" or condition.get("operator") != "==":
        raise SuiteError(f"unsupported row_condition {condition!r}")
    return sql.SQL("f.{} = {}").format(sql.Identifier(condition["column"]["name"]),
                                       sql.Literal(condition["parameter"]))


def unexpected_rows_predicate(expectation: dict[str, Any], table: sql.Identifier) -> sql.Composable:
    """Rows of flattened table ``f`` that break ``expectation``, as GX counts them."""
    kwargs = expectation["kwargs"]
    column = sql.Identifier(kwargs["column"])
    kind = expectation["type"]
    if kind == "expect_column_values_to_not_be_null":
        broken = sql.SQL("f.{} IS NULL").format(column)
    elif kind == "expect_column_values_to_be_in_set":
        allowed = [str(v).lower() if isinstance(v, bool) else str(v) for v in kwargs["value_set"]]
        broken = sql.SQL("f.{c} IS NOT NULL AND f.{c}::text <> ALL({s}::text[])").format(
            c=column, s=sql.Literal(allowed))
    elif kind == "expect_column_values_to_be_unique":
        broken = sql.SQL("f.{c} IN (SELECT {c} FROM {t} WHERE {c} IS NOT NULL GROUP BY {c} HAVING count(*) > 1)"
                         ).format(c=column, t=table)
    else:
        raise SuiteError(f"{kind} cannot be a critical (quarantining) rule")
    return sql.SQL("({}) AND ({})").format(_condition_sql(kwargs), broken)


def quarantine(conn: psycopg.Connection, endpoint: str, sync_run_id: int, expectation: dict[str, Any],
               gx_unexpected: int) -> int:
    """Quarantine the records that broke a critical expectation; return how many."""
    table = validation_table(endpoint, sync_run_id)
    detail = f"{expectation['type']}({expectation['kwargs']['column']})"
    inserted = conn.execute(sql.SQL("""
        INSERT INTO clever_landing.quarantine (sync_run_id, endpoint, clever_id, rule, detail, raw)
        SELECT %s, %s, f.clever_id, %s, %s, l.raw
        FROM {t} AS f JOIN {l} AS l ON l.ctid = f.landing_row::tid AND l.sync_run_id = %s
        WHERE {p}""").format(t=table, l=landing_table(endpoint), p=unexpected_rows_predicate(expectation, table)),
        (sync_run_id, endpoint, expectation["description"], detail, sync_run_id)).rowcount
    if inserted != gx_unexpected:
        raise SuiteError(f"endpoint {endpoint!r}: GX counted {gx_unexpected} record(s) breaking "
                         f"{expectation['description']!r} but {inserted} were found to quarantine")
    return inserted


# -- Great Expectations --------------------------------------------------------------------------------
_PASSWORD_VARIABLE = "CLEVER_GX_WAREHOUSE_PASSWORD"


def _sqlalchemy_url(conninfo: str) -> str:
    """SQLAlchemy URL for GX, resolving table names in the validation schema. The
    password stays out of GX's config: GX substitutes it from the environment."""
    from urllib.parse import quote_plus

    from sqlalchemy.engine import URL

    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    query = {k: str(v) for k, v in params.items() if k not in {"host", "port", "dbname", "user", "password"}}
    query["options"] = f"{query.get('options', '')} -c search_path={VALIDATION_SCHEMA}".strip()
    url = URL.create("postgresql+psycopg", username=params.get("user"), host=params.get("host"),
                     port=int(params["port"]) if params.get("port") else None, database=params.get("dbname"),
                     query=query).render_as_string(hide_password=False)
    if not params.get("password"):
        return url
    os.environ[_PASSWORD_VARIABLE] = quote_plus(str(params["password"]))
    user = quote_plus(str(params.get("user") or ""))
    return url.replace(f"://{user}@", f"://{user}:${{{_PASSWORD_VARIABLE}}}@", 1)


def run_suites(conninfo: str, sync_run_id: int, suites: dict[str, dict[str, Any]], docs_dir: Path
               ) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Run each endpoint's suite on its flattened table; build the run's Data Docs.

    Returns, per endpoint, (expectation document, GX result) pairs."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no phoning home from workers
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={"run": {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }},
    )
    context = gx.get_context(project_config=config, mode="ephemeral")
    source = context.data_sources.add_postgres("clever_warehouse", connection_string=_sqlalchemy_url(conninfo))
    definitions = []
    for endpoint, document in suites.items():
        asset = source.add_table_asset(f"{endpoint}_run_{sync_run_id}", table_name=f"{endpoint}_run_{sync_run_id}")
        suite = context.suites.add(gx.ExpectationSuite(
            name=document["name"], meta=document.get("meta") or {},
            expectations=[dict(e) for e in document["expectations"]]))
        definitions.append(context.validation_definitions.add(gx.ValidationDefinition(
            name=f"{endpoint}_run_{sync_run_id}", data=asset.add_batch_definition_whole_table("extraction"),
            suite=suite)))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=f"sync_run_{sync_run_id}", validation_definitions=definitions,
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["run"])],
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": _EXAMPLES}))
    result = checkpoint.run()
    from clever.data_docs_offline import make_offline

    make_offline(docs_dir)  # the docs load their scripts and styles from CDNs otherwise
    endpoint_of_suite = {document["name"]: endpoint for endpoint, document in suites.items()}
    outcomes: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for validation in result.run_results.values():
        endpoint = endpoint_of_suite[validation.suite_name]
        documents = {expectation_key(e): e for e in suites[endpoint]["expectations"]}
        pairs = [(documents.get(expectation_key(r.expectation_config.to_json_dict())), r) for r in validation.results]
        if len(pairs) != len(documents) or any(document is None for document, _ in pairs):
            raise SuiteError(f"endpoint {endpoint!r}: GX results do not match the suite's expectations")
        outcomes[endpoint] = pairs
    source.get_engine().dispose()
    return outcomes


def expectation_key(expectation: dict[str, Any]) -> tuple[str, str]:
    """What identifies an expectation within a suite (a test keeps it unique)."""
    return expectation["type"], expectation["kwargs"]["column"]


# -- the step -------------------------------------------------------------------------------------------
def reference_runs(conn: psycopg.Connection, district_slug: str, sync_run_id: int,
                   completed: set[str], events: EventsRun | None = None) -> dict[str, int | None]:
    """Per endpoint, the extraction references resolve in: this run's if it has one,
    else the district's latest approved one; for an events run, the district's full
    extraction (the run's and the applied changes go over it, see _resolves)."""
    from clever.catalog import ENDPOINTS

    if events is not None:
        bases = dict(conn.execute("SELECT endpoint, base_run_id FROM clever_landing.current_extractions "
                                  "WHERE district_slug = %s", (district_slug,)).fetchall())
        return {endpoint: bases.get(endpoint) for endpoint in ENDPOINTS}
    runs: dict[str, int | None] = {}
    for endpoint in ENDPOINTS:
        if endpoint in completed:
            runs[endpoint] = sync_run_id
            continue
        row = conn.execute(
            """SELECT sync_run_id FROM clever_landing.approved_extractions
               WHERE district_slug = %s AND endpoint = %s ORDER BY approved_at DESC, sync_run_id DESC LIMIT 1""",
            (district_slug, endpoint)).fetchone()
        runs[endpoint] = row[0] if row else None
    return runs


def drop_abandoned_copies(conn: psycopg.Connection, district_slug: str, sync_run_id: int) -> None:
    """Drop flattened copies a killed validation left behind (older runs of the district;
    one run per district is active at a time)."""
    stale = conn.execute(
        """SELECT t.tablename FROM pg_tables AS t
           JOIN clever_landing.sync_runs AS r
             ON r.sync_run_id = substring(t.tablename FROM '_run_([0-9]+)$')::bigint
           WHERE t.schemaname = %s AND r.district_slug = %s AND r.sync_run_id < %s""",
        (VALIDATION_SCHEMA, district_slug, sync_run_id)).fetchall()
    for (table,) in stale:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(VALIDATION_SCHEMA, table)))


def validate_run(conninfo: str, sync_run_id: int, *, quarantine_threshold: float = 0.05,
                 quarantine_floor: int = 10, docs_dir: Path | None = None, full: bool = False) -> dict[str, Any]:
    """Validate every completed endpoint of a run; quarantine what breaks a critical rule.
    Only records that may have changed since the endpoint's baseline are checked, unless
    ``full`` (see the module doc).

    Raises ValidationFailed when an endpoint quarantines more records than the limit."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        run = get_sync_run(conn, sync_run_id)
        pruned = pruned_endpoints(conn, sync_run_id)
        if pruned:  # what is left is not the extraction, and its results are the audit trail
            raise ValidationFailed(f"district {run.district_slug!r}: sync run {sync_run_id} no longer holds its "
                                   f"extraction of {', '.join(pruned)} (landing retention pruned it); it cannot be "
                                   "validated again. Trigger a new run instead.")
        docs_dir = docs_dir or data_docs_index(run.district_slug, sync_run_id).parent
        completed = completed_endpoints(conn, sync_run_id)
        endpoints = [e for e in run.endpoints if e in completed]
        # An sso or Library district's cut-down records: the suites of what Clever sends that app.
        suites = {e: load_suite_document(run.api_version, e, integration_name=run.integration) for e in endpoints}
        fingerprints = {e: suite_fingerprint(suites[e]) for e in endpoints}
        # An events run holds only changed records: each is checked (no baseline).
        events = EventsRun(run.district_slug, sync_run_id) if run_mode(conn, sync_run_id) == "events" else None
        references = reference_runs(conn, run.district_slug, sync_run_id, completed, events)
        baselines = {e: None if full or events else find_baseline(conn, run.district_slug, e, sync_run_id,
                                                                   fingerprints[e])
                     for e in endpoints}
        landed = dict(conn.execute("SELECT endpoint, row_count FROM clever_landing.endpoint_runs "
                                   "WHERE sync_run_id = %s", (sync_run_id,)).fetchall())
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(VALIDATION_SCHEMA)))
        drop_abandoned_copies(conn, run.district_slug, sync_run_id)
        try:
            outcomes = {}
            for e in endpoints:
                checked = flatten(conn, e, sync_run_id, suites[e], references, baselines[e], events)
                baseline = baselines[e].sync_run_id if baselines[e] else None
                outcomes[e] = EndpointOutcome(e, landed[e], checked, baseline)
                log.info("district %s, run %d, endpoint %s: checking %d of %d records (%s)", run.district_slug,
                         sync_run_id, e, checked, landed[e],
                         f"new or changed since run {baseline}" if baseline else "all: no baseline")
            # An endpoint with nothing new or changed has nothing for GX to check or report.
            to_check = {e: suites[e] for e in endpoints if outcomes[e].checked}
            results = run_suites(conninfo, sync_run_id, to_check, docs_dir) if to_check else {}
            with conn.transaction():
                conn.execute("DELETE FROM clever_landing.quarantine WHERE sync_run_id = %s", (sync_run_id,))
                conn.execute("DELETE FROM clever_landing.validation_results WHERE sync_run_id = %s", (sync_run_id,))
                conn.execute("DELETE FROM clever_landing.validated_extractions WHERE sync_run_id = %s",
                             (sync_run_id,))
                for endpoint, pairs in results.items():
                    _record(conn, sync_run_id, endpoint, pairs, outcomes[endpoint])
                for outcome in outcomes.values():
                    outcome.quarantined = conn.execute(
                        """SELECT count(DISTINCT coalesce(clever_id, raw::text)) FROM clever_landing.quarantine
                           WHERE sync_run_id = %s AND endpoint = %s""",
                        (sync_run_id, outcome.endpoint)).fetchone()[0]
                    conn.execute(
                        """INSERT INTO clever_landing.validated_extractions
                           (sync_run_id, endpoint, suite_fingerprint, reference_runs, records, records_checked,
                            baseline_run_id)
                           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                        (sync_run_id, outcome.endpoint, fingerprints[outcome.endpoint],
                         psycopg.types.json.Jsonb(references), outcome.records, outcome.checked,
                         outcome.baseline_run_id))
        finally:
            for endpoint in endpoints:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(validation_table(endpoint, sync_run_id)))

    index = docs_dir / "index.html"
    summary = {
        "records": {e: o.records for e, o in outcomes.items()},
        "records_checked": {e: o.checked for e, o in outcomes.items()},
        "baseline_runs": {e: o.baseline_run_id for e, o in outcomes.items() if o.baseline_run_id},
        "quarantined": {e: o.quarantined for e, o in outcomes.items() if o.quarantined},
        "failed_rules": {e: o.failed_rules for e, o in outcomes.items() if o.failed_rules},
        "warnings": {e: o.warnings for e, o in outcomes.items() if o.warnings},
        "data_docs": str(index) if index.exists() else None,
    }
    for outcome in outcomes.values():
        for rule, n in outcome.failed_rules.items():
            log.warning("district %s, run %d, endpoint %s: %d record(s) quarantined: %s",
                        run.district_slug, sync_run_id, outcome.endpoint, n, rule)
        for rule, n in outcome.warnings.items():
            log.info("district %s, run %d, endpoint %s: warning, %d record(s): %s",
                     run.district_slug, sync_run_id, outcome.endpoint, n, rule)
    over = [o for o in outcomes.values()
            if o.quarantined > quarantine_limit(o.records, quarantine_threshold, quarantine_floor)]
    if over:
        detail = "; ".join(
            f"{o.endpoint}: {o.quarantined} of {o.records} records quarantined (limit "
            f"{quarantine_limit(o.records, quarantine_threshold, quarantine_floor)}): "
            + ", ".join(f"{rule} ({n})" for rule, n in sorted(o.failed_rules.items(), key=lambda kv: -kv[1])[:3])
            for o in over)
        raise ValidationFailed(
            f"district {run.district_slug!r}, sync run {sync_run_id}: validation failed; nothing will be "
            f"approved or archived: {detail}. Data Docs: {summary['data_docs']}")
    log.info("district %s, run %d: validated %s; data docs %s", run.district_slug, sync_run_id,
             summary["records_checked"], summary["data_docs"])
    return summary


def _record(conn: psycopg.Connection, sync_run_id: int, endpoint: str,
            pairs: list[tuple[dict[str, Any], Any]], outcome: EndpointOutcome) -> None:
    for expectation, result in pairs:
        details = result.result or {}
        if not result.success and "unexpected_count" not in details:
            # GX reports a metric it could not compute as a failed result without counts.
            raise SuiteError(f"endpoint {endpoint!r}: GX could not evaluate {expectation['description']!r}: "
                             f"{str(result.exception_info)[:500]}")
        unexpected = int(details.get("unexpected_count") or 0)
        severity = expectation.get("severity", "critical")
        if not result.success:
            if severity == "critical":
                quarantine(conn, endpoint, sync_run_id, expectation, unexpected)
                outcome.failed_rules[expectation["description"]] = unexpected
            else:
                outcome.warnings[expectation["description"]] = unexpected
        conn.execute(
            """INSERT INTO clever_landing.validation_results
               (sync_run_id, endpoint, expectation_type, column_name, description, severity, success,
                element_count, unexpected_count, examples)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (sync_run_id, endpoint, expectation["type"], expectation["kwargs"]["column"], expectation["description"],
             severity, bool(result.success), details.get("element_count"), unexpected,
             psycopg.types.json.Jsonb(details.get("partial_unexpected_list") or [])))
