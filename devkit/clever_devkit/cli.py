"""What the ``make`` targets' commands share: a mistake the user can fix prints one line
saying how, not a traceback."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable

from clever.config import ConfigError

TRACEBACK_ENV = "CLEVER_TRACEBACK"  # set to 1 to see the traceback of such an error


class UsageError(Exception):
    """A mistake the user can fix (a busy port, a missing file, an unknown name); the
    message says how."""


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """``main(argv)``; a config error or a UsageError prints ``error: ...`` and exits 2."""
    try:
        return main(argv)
    except (ConfigError, UsageError) as exc:
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False
