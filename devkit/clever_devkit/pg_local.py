"""Embedded PostgreSQL server for development, the demo and the tests.

Uses the machine's own PostgreSQL binaries (``pg_ctl`` on PATH or
``/usr/lib/postgresql/<version>/bin``), installing Debian's ``postgresql`` package when
there are none. PostgreSQL refuses to run as root, so when we are root every server
command runs as the ``postgres`` OS user on a data directory that user owns; as any
other user it runs as that user.

Every connection needs the password (scram-sha-256), generated at initialisation and
kept in ``<data dir>.password`` (mode 0600, readable by whoever set the server up);
the URLs this module gives carry it. The Unix socket admits only the server's own OS
user. A server initialised before (with ``trust``) is switched over at its next start.

CLI::

    python -m clever_devkit.pg_local up|down|status|url [--data-dir DIR] [--port N]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from clever.paths import LOCAL_DIR

DEFAULT_DATA_DIR = LOCAL_DIR / "pgdata"
DEFAULT_PORT = int(os.environ.get("CLEVER_PG_PORT", "55432"))
DEFAULT_USER = "clever"
DEFAULT_DB = "clever_warehouse"
SERVICE_USER = "postgres"


def password_file(data_dir: Path) -> Path:
    return data_dir.parent / f"{data_dir.name}.password"


def _userinfo(user: str, data_dir: Path) -> str:
    try:
        return f"{user}:{password_file(data_dir).read_text().strip()}"
    except FileNotFoundError:  # not initialised yet: the URL gains its password at `make db-up`
        return user


def default_url(port: int = DEFAULT_PORT) -> str:
    """URL of the embedded warehouse (`make db-up`), without touching the server."""
    return f"postgresql://{_userinfo(DEFAULT_USER, DEFAULT_DATA_DIR)}@127.0.0.1:{port}/{DEFAULT_DB}"


class PostgresError(RuntimeError):
    """The local PostgreSQL server could not be set up, started or stopped."""


def _is_root() -> bool:
    return os.geteuid() == 0


def find_pg_bin(install_if_missing: bool = True) -> Path:
    """Directory holding initdb/pg_ctl/postgres: $PG_BIN, then PATH, then Debian's layout."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    on_path = shutil.which("pg_ctl")
    if on_path:
        resolved = Path(on_path).resolve().parent
        if (resolved / "initdb").exists():
            return resolved
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    if install_if_missing and _is_root() and shutil.which("apt-get"):
        print("No PostgreSQL server binaries found; installing Debian's postgresql package", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env)
        return find_pg_bin(install_if_missing=False)
    raise PostgresError(
        "No PostgreSQL server binaries found (looked at $PG_BIN, pg_ctl on PATH and "
        "/usr/lib/postgresql/*/bin). Install PostgreSQL (e.g. `apt-get install postgresql`)."
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _service_user_can_reach(path: Path) -> bool:
    """Can the postgres OS user traverse every parent of ``path``?"""
    probe = subprocess.run(
        ["runuser", "-u", SERVICE_USER, "--", "test", "-x", str(path.parent)],
        capture_output=True, check=False,
    )
    return probe.returncode == 0


@dataclass
class LocalPostgres:
    """One PostgreSQL server on 127.0.0.1:<port> with its data directory at ``data_dir``."""

    data_dir: Path = DEFAULT_DATA_DIR
    port: int = DEFAULT_PORT
    user: str = DEFAULT_USER
    dbname: str = DEFAULT_DB
    fast_unsafe: bool = False  # fsync off: for throwaway test servers only
    settings: dict[str, str] = field(default_factory=dict)  # extra server settings (-c name=value)
    bin_dir: Path = field(default_factory=find_pg_bin)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)

    # -- helpers -----------------------------------------------------------------------
    @property
    def _as_service_user(self) -> bool:
        return _is_root()

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_service_user:
            cmd = ["runuser", "-u", SERVICE_USER, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise PostgresError(f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def _real_data_dir(self) -> Path:
        """Where the cluster lives. As root, if the postgres user cannot reach ``data_dir``
        (e.g. a repo under a 0700 home), the cluster lives under /var/tmp and ``data_dir``
        becomes a symlink to it."""
        if self.data_dir.is_symlink():
            return self.data_dir.resolve()
        if not self._as_service_user:
            return self.data_dir
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if _service_user_can_reach(self.data_dir):
            return self.data_dir
        digest = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:12]
        real = Path("/var/tmp/clever-warehouse") / digest / "pgdata"
        real.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(real.parent.parent, 0o755)
        os.chmod(real.parent, 0o755)
        if not self.data_dir.exists():
            self.data_dir.symlink_to(real)
        return real

    @property
    def log_file(self) -> Path:
        return self._real_data_dir().parent / f"{self._real_data_dir().name}.log"

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{_userinfo(self.user, self.data_dir)}@127.0.0.1:{self.port}/{dbname}"

    @property
    def password_file(self) -> Path:
        return password_file(self.data_dir)

    def _new_password(self) -> str:
        """A fresh password in ``password_file`` (0600), also returned."""
        password = secrets.token_hex(24)
        self.password_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(password + "\n")
        return password

    def _for_service_user(self, path: Path) -> None:
        if self._as_service_user:
            pw = pwd.getpwnam(SERVICE_USER)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    # -- lifecycle ---------------------------------------------------------------------
    def initialized(self) -> bool:
        return (self._real_data_dir() / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialized():
            return
        data = self._real_data_dir()
        data.mkdir(parents=True, exist_ok=True)
        self._for_service_user(data)
        self._for_service_user(data.parent)
        os.chmod(data, 0o700)
        # initdb (run as the postgres OS user) reads the password from a file of its own.
        pwfile = data.parent / ".initdb-password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self._new_password() + "\n")
        self._for_service_user(pwfile)
        try:
            self._run(
                str(self.bin_dir / "initdb"), "-D", str(data), "-U", self.user, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _require_passwords(self) -> None:
        """A cluster initialised with ``trust`` (before passwords): give the user a password
        and make every connection need it, then reload."""
        hba = self._real_data_dir() / "pg_hba.conf"
        text = hba.read_text()
        trusting = re.compile(r"^([^#\n]*\s)trust(\s*)$", re.MULTILINE)
        if self.password_file.exists() and not trusting.search(text):
            return
        import psycopg
        from psycopg import sql

        with psycopg.connect(f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(self.user),
                                                                     sql.Literal(self._new_password())))
        hba.write_text(trusting.sub(r"\1scram-sha-256\2", text))
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self._real_data_dir()), "reload")

    def running(self) -> bool:
        if not self.initialized():
            return False
        return self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self._real_data_dir()), "status",
                         check=False).returncode == 0

    def running_port(self) -> int | None:
        """The port the running server listens on (line 4 of postmaster.pid), which may
        differ from ``port`` if it was started with another one; None if not running."""
        if not self.running():
            return None
        try:
            lines = (self._real_data_dir() / "postmaster.pid").read_text().splitlines()
            return int(lines[3])
        except (OSError, IndexError, ValueError):
            return None

    def start(self, timeout: int = 60) -> None:
        self.init()
        if self.running():
            return
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self._real_data_dir().parent}",
            "-c max_connections=200",
            "-c unix_socket_permissions=0700",  # the socket admits only the server's OS user
        ]
        if self.fast_unsafe:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        options += [f"-c {name}={value}" for name, value in self.settings.items()]
        self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self._real_data_dir()), "-l", str(self.log_file),
            "-o", " ".join(options), "-w", "-t", str(timeout), "start",
        )
        self._require_passwords()
        self.create_database(self.dbname)

    def stop(self) -> None:
        if self.running():
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self._real_data_dir()), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        self.stop()
        real = self._real_data_dir()
        shutil.rmtree(real, ignore_errors=True)
        if self.log_file.exists():
            self.log_file.unlink()
        self.password_file.unlink(missing_ok=True)
        if self.data_dir.is_symlink():
            self.data_dir.unlink()

    # -- databases ---------------------------------------------------------------------
    def create_database(self, dbname: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return self.url_for(dbname)

    def drop_database(self, dbname: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise PostgresError(f"nothing listening on {host}:{port} after {timeout}s")


def main(argv: list[str] | None = None) -> int:
    from clever.connections import redacted

    parser = argparse.ArgumentParser(prog="clever-pg", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "status", "url", "destroy"])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)

    if args.action == "up" and os.environ.get("AIRFLOW_CONN_CLEVER_WAREHOUSE"):
        print("AIRFLOW_CONN_CLEVER_WAREHOUSE is set: using that warehouse, no local server started.")
        return 0
    pg = LocalPostgres(data_dir=args.data_dir, port=args.port)
    actual_port = pg.running_port() if args.action in {"up", "status", "url"} else None
    if actual_port is not None and actual_port != args.port:
        print(f"The embedded warehouse is already running on port {actual_port}, not on the requested "
              f"port {args.port} (CLEVER_PG_PORT): its URL is {redacted(replace(pg, port=actual_port).url)}. "
              f"Use CLEVER_PG_PORT={actual_port}, or stop it with `make db-down` and start it again.",
              file=sys.stderr)
        return 2
    if args.action == "up":
        from clever_devkit.cli import UsageError, port_in_use

        if actual_port is None and port_in_use(args.port):
            raise UsageError(f"port {args.port} is in use, so the embedded warehouse cannot start there: stop what "
                             "listens on it, or choose another port (CLEVER_PG_PORT=<free port>)")
        pg.start()
        print(f"Local warehouse running: {redacted(pg.url)}  (password in {pg.password_file}; data: "
              f"{args.data_dir}, log: {pg.log_file})")
    elif args.action == "down":
        pg.stop()
        print("Local warehouse stopped.")
    elif args.action == "destroy":
        pg.destroy()
        print(f"Local warehouse removed ({args.data_dir}).")
    elif args.action == "status":
        state = "running" if pg.running() else ("stopped" if pg.initialized() else "not initialised")
        print(f"{state}: {redacted(pg.url)}")
        return 0 if state == "running" else 3
    elif args.action == "url":
        print(pg.url)
    return 0


if __name__ == "__main__":
    from clever_devkit.cli import run_main

    sys.exit(run_main(main))
