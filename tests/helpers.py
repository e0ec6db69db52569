"""Small helpers shared by tests."""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def load_records(district_dir: Path, api_version: str, endpoint: str) -> list[dict[str, Any]]:
    """The records a simulator serves for an endpoint, sorted by id as Clever sorts them."""
    path = district_dir / api_version / f"{endpoint}.json"
    if not path.exists():
        return []
    return sorted(json.loads(path.read_text(encoding="utf-8")), key=lambda r: r["id"])


def write_records(district_dir: Path, api_version: str, endpoint: str, records: list[dict[str, Any]]) -> None:
    path = district_dir / api_version / f"{endpoint}.json"
    staging = path.with_suffix(".json.tmp")
    try:
        text = json.dumps(records, ensure_ascii=False, indent=1).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only its JSON escape can be written
        text = json.dumps(records, indent=1).encode("ascii")
    staging.write_bytes(text)
    os.replace(staging, path)  # a new inode: the simulator cannot miss the change


DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"


def render_staging_model(model: str, records_sql: str = "select * from records_under_test") -> str:
    """A staging model's SQL as dbt would compile it, but reading ``current_records(...)``
    from ``records_sql`` (columns district_slug, district_id, clever_id, sync_run_id,
    synced_at, raw, record_hash), so it can run on any rows without a dbt build."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    context = {}
    for macros_file in ("casts.sql", "current_records.sql"):
        macros = env.from_string((DBT_PROJECT / "macros" / macros_file).read_text()).module
        context.update({name: value for name, value in vars(macros).items() if not name.startswith("_")})
    context.update(current_records=lambda endpoint: records_sql,
                   ref=lambda name: f"clever_staging.{name}", source=lambda schema, table: f"{schema}.{table}")
    sql = (DBT_PROJECT / "models" / "staging" / f"{model}.sql").read_text()
    return env.from_string(sql).render(**context)


def cast_functions_sql() -> str:
    """The DDL of dbt's on-run-start hook (create_cast_functions in casts.sql)."""
    import jinja2

    macros = jinja2.Environment().from_string((DBT_PROJECT / "macros" / "casts.sql").read_text()).module
    return str(macros.create_cast_functions())


_JSON_PATH = re.compile(r"\braw((?:\s*(?:#>>|#>|->>|->)\s*'[^']*')+)")
_STEP = re.compile(r"(#>>|#>|->>|->)\s*'([^']*)'")


def json_paths(expression: str) -> set[str]:
    """Dotted paths of `raw` an SQL expression reads (`raw #>> '{a,b}'`, `raw -> 'a' ->> 'b'`...)."""
    paths = set()
    for chain in _JSON_PATH.findall(expression):
        steps: list[str] = []
        for operator, argument in _STEP.findall(chain):
            steps += argument.strip("{}").split(",") if operator.startswith("#") else [argument]
        paths.add(".".join(steps))
    return paths


def split_top_level(select_list: str) -> list[str]:
    items, depth, quoted, current = [], 0, False, ""
    for char in select_list:
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "([":
            depth += 1
        elif not quoted and char in ")]":
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            items.append(current)
            current = ""
        else:
            current += char
    return [*items, current]


@functools.cache
def staging_columns(endpoint: str) -> dict[str, set[str]]:
    """The model's output columns, in order, with the `raw` paths each one reads."""
    sql = render_staging_model(f"stg_clever__{endpoint}")
    sql = re.sub(r"--[^\n]*", "", sql)
    start = [m.end() for m in re.finditer(r"(?m)^select\n", sql)][-1]
    select_list = sql[start: sql.rindex("\nfrom (")]
    columns = {}
    for item in split_top_level(select_list):
        expression, _, alias = item.strip().rpartition(" as ")
        columns[alias.strip()] = json_paths(expression or alias)
    return columns


def documented_models(layer: str) -> dict[str, dict]:
    """dbt's docs of a model layer (``staging``, ``intermediate`` or ``marts``: the folder
    under models/), by model name: each with its ``columns`` in documented order, their
    descriptions resolved (doc blocks), from dbt's manifest of the project as it is now."""
    from clever_devkit.schema_docs import models, project_manifest

    return {name: {**node, "columns": list(node["columns"].values())}
            for name, node in models(project_manifest()).items()
            if node["original_file_path"].split("/")[1] == layer}


def documented_types(layer: str, model: str) -> dict[str, str]:
    """Column name -> data_type, in documented order."""
    return {c["name"]: c.get("data_type") for c in documented_models(layer)[model]["columns"]}


def land_and_build(conninfo: str, district, base_url: str, token: str, *, endpoints=None,
                   validate: bool = False, docs_dir=None, summarize: bool = False) -> int:
    """One sync of ``endpoints`` (default: all of ``district``'s, a DistrictConfig) through
    the pipeline's steps in this process (clever.steps.run_sync, as the DAG runs them), for
    integration tests that need a built warehouse but not Airflow. Returns the run id.
    By default it skips the Great Expectations gate (the sample data passes it;
    tests/integration/test_validation.py covers it) to keep them quick, and the summary
    (and the landing retention after it), which tests call when they look at it."""
    from clever import steps
    from clever.connections import CleverEndpoint, WarehouseTarget

    ctx = steps.SyncContext(target=WarehouseTarget.from_conninfo(conninfo), district=district,
                            params=steps.RunParams(endpoints=tuple(endpoints) if endpoints else None),
                            api=CleverEndpoint(base_url, token), validation_docs_dir=docs_dir)
    skip = {step for step, wanted in (("validate", validate), ("summarize", summarize)) if not wanted}
    return steps.run_sync(ctx, skip=frozenset(skip)).run_id


class Hostile:
    """A local server whose every GET is answered by ``handler(request) -> None``."""

    def __init__(self, handler: Callable[[BaseHTTPRequestHandler], None]):
        owner = self
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization header)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Authorization")))
                try:
                    handler(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send_trickle(request: BaseHTTPRequestHandler, interval: float, count: int) -> None:
    """A 200 that promises a large JSON body, then sends a byte every ``interval`` seconds,
    ``count`` times: each read is quick, the page never ends."""
    import time

    request.send_response(200)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", "1000000")
    request.end_headers()
    for _ in range(count):
        request.wfile.write(b" ")
        request.wfile.flush()
        time.sleep(interval)


def send_json(request: BaseHTTPRequestHandler, payload, status: int = 200, headers: dict | None = None) -> None:
    body = json.dumps(payload).encode()
    request.send_response(status)
    for name, value in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                        **(headers or {})}.items():
        request.send_header(name, value)
    request.end_headers()
    request.wfile.write(body)


def _readable(message: str) -> str:
    """A mail's subject and decoded text (its parts' payloads, HTML entities resolved)."""
    import email
    import html

    parsed = email.message_from_string(message)
    parts = [part.get_payload(decode=True) for part in parsed.walk() if not part.is_multipart()]
    body = "\n".join(p.decode(errors="replace") for p in parts if p)
    return f"Subject: {parsed['Subject']}\n{html.unescape(body)}"


class SmtpSink:
    """A local SMTP server that keeps every message it is sent (as ``(recipients, data)``)."""

    def __init__(self):
        import socketserver

        owner = self
        self.messages: list[tuple[list[str], str]] = []

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self):
                self.reply("220 sink ready")
                recipients: list[str] = []
                while line := self.rfile.readline().decode(errors="replace"):
                    verb = line.strip().split(" ", 1)[0].upper()
                    if verb == "EHLO":
                        self.wfile.write(b"250-sink\r\n250 8BITMIME\r\n")
                    elif verb == "RCPT":
                        recipients.append(line.split(":", 1)[1].strip().strip("<>"))
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 go on")
                        data = []
                        while (part := self.rfile.readline().decode(errors="replace")) not in (".\r\n", ""):
                            data.append(part)
                        owner.messages.append((recipients, _readable("".join(data))))
                        recipients = []
                        self.reply("250 kept")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:  # HELO, MAIL, RSET, NOOP
                        self.reply("250 ok")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def connection(self) -> str:
        """The sink as an Airflow SMTP connection (AIRFLOW_CONN_SMTP_DEFAULT)."""
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
                           "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "alerts@example.org",
                                     "retry_limit": 0}})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class WebhookReceiver:
    """A local HTTP server keeping the JSON bodies POSTed to it (a Slack-compatible webhook)."""

    def __init__(self):
        owner = self
        self.posts: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                owner.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def connection(self) -> str:
        """The receiver as an Airflow HTTP connection whose host is the webhook URL."""
        return json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{self.server.server_address[1]}/hook"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- Clever Library ---------------------------------------------------------------------------------
def library_teachers(sections: list[dict[str, Any]]) -> tuple[str, str, str]:
    """Two teachers of the sample district who share a student through sections each teaches
    without the other, and a co-taught section: (teacher a, teacher b, the shared student)."""
    import itertools

    def teaches(section: dict[str, Any]) -> set[str]:
        return set(section.get("teachers") or []) | ({section["teacher"]} if section.get("teacher") else set())

    teachers = sorted({t for s in sections for t in teaches(s)})
    for a, b in itertools.combinations(teachers, 2):
        only_a = [s for s in sections if a in teaches(s) and b not in teaches(s)]
        only_b = [s for s in sections if b in teaches(s) and a not in teaches(s)]
        both = [s for s in sections if {a, b} <= teaches(s)]
        shared = sorted({st for s in only_a for st in s.get("students") or []}
                        & {st for s in only_b for st in s.get("students") or []}
                        - {st for s in both for st in s.get("students") or []})
        if shared and both:
            return a, b, shared[0]
    raise AssertionError("the sample district has no two teachers sharing a student and a section")


def library_view(sections: list[dict[str, Any]], teacher: str) -> tuple[set[str], set[str]]:
    """(section ids, student ids) a Library teacher's token sees."""
    own = [s for s in sections if s.get("teacher") == teacher or teacher in (s.get("teachers") or [])]
    return {s["id"] for s in own}, {st for s in own for st in s.get("students") or []}


def without_student(sections: list[dict[str, Any]], student: str, teachers: set[str]) -> list[dict[str, Any]]:
    """The sections with ``student`` taken out of every section any of ``teachers`` teaches."""
    changed = []
    for original in sections:
        section = dict(original)
        if (set(section.get("teachers") or []) | {section.get("teacher")}) & teachers:
            section["students"] = [st for st in section.get("students") or [] if st != student]
        changed.append(section)
    return changed


def connect_library_teachers(conninfo: str, district_slug: str, teachers: list[str]) -> None:
    """What the application writes when teachers connect it through the Clever Library."""
    import psycopg

    from clever.warehouse import ensure_landing_schema

    with psycopg.connect(conninfo, autocommit=True) as conn:
        ensure_landing_schema(conn)
        for teacher in teachers:
            conn.execute("INSERT INTO app.library_teachers (district_slug, teacher_clever_id) VALUES (%s, %s) "
                         "ON CONFLICT DO NOTHING", (district_slug, teacher))
