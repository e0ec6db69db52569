"""Debian packages some commands need, found on PATH or installed on first use.

``chromium`` drives the Airflow UI test and the demo's UI walkthrough; ``docker-compose``
validates docker-compose.yaml offline. As root on a system with apt-get a missing one is
installed (as pg_local does for PostgreSQL); otherwise the error says what to install.

    python -m clever_devkit.system_tools chromium docker-compose
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGES = {"chromium": "chromium", "docker-compose": "docker-compose"}  # command -> Debian package


class ToolMissing(RuntimeError):
    """A command is not installed and could not be installed here."""


def _apt_get(*args: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # wait for another apt run instead of failing on its lock
    subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", *args], check=True, env=env)


def find_or_install(command: str) -> Path:
    package = PACKAGES.get(command, command)
    found = shutil.which(command)
    if found:
        return Path(found)
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"{command} not found; installing Debian's {package} package", file=sys.stderr, flush=True)
        try:
            _apt_get("update", "-qq")
            _apt_get("install", "-y", "-qq", package)
        except subprocess.CalledProcessError as exc:
            raise ToolMissing(f"apt-get could not install {package} ({exc})") from None
        found = shutil.which(command)
        if found:
            return Path(found)
    raise ToolMissing(f"{command} is not installed: install Debian's {package} package "
                      f"(apt-get install {package}) or put {command} on PATH")


def main(argv: list[str] | None = None) -> int:
    commands = (argv if argv is not None else sys.argv[1:]) or list(PACKAGES)
    missing = 0
    for command in commands:
        try:
            print(f"{command}: {find_or_install(command)}")
        except ToolMissing as exc:
            print(f"warning: {exc}", file=sys.stderr)
            missing += 1
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
