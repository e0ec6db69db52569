"""The Airflow UI used as a person uses it, in headless Chromium driven by Playwright:
log in, read the DAG list, trigger a district's sync from the trigger form with params,
wait for the run's outcome and take screenshots. Used by the UI test (tests/ui) and by
``make demo``; the caller decides what counts as right.

``running_airflow`` starts ``python -m clever_devkit.runner airflow`` (what ``make airflow``
runs: ``airflow standalone``) on a port of its own and stops every process it started.
Playwright drives Debian's chromium (``/usr/bin/chromium``, see clever_devkit.system_tools):
``playwright install`` would download a browser build, which is not needed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
TERMINAL_STATES = {"success", "failed"}


class AirflowUIError(RuntimeError):
    """The UI or the Airflow behind it did not get where it should in time."""


@dataclass
class Walkthrough:
    """What a person saw in the UI."""

    dag_ids: list[str] = field(default_factory=list)
    run_id: str | None = None
    run_state: str | None = None
    screenshots: list[Path] = field(default_factory=list)


def _healthy(base_url: str) -> bool:
    import requests

    try:
        health = requests.get(f"{base_url}/api/v2/monitor/health", timeout=5).json()
    except (requests.RequestException, ValueError):
        return False
    return all((health.get(part) or {}).get("status") == "healthy"
               for part in ("metadatabase", "scheduler", "dag_processor"))


@contextmanager
def running_airflow(port: int, env: dict[str, str], log_path: Path, timeout: float = 420) -> Iterator[str]:
    """`airflow standalone` (via clever_devkit.runner) on 127.0.0.1:``port`` until the block ends.

    Waits, up to ``timeout`` seconds, for the api-server, scheduler and DAG processor to
    report healthy. The processes run in a session of their own, stopped as a group."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen([sys.executable, "-m", "clever_devkit.runner", "airflow", "--port", str(port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not _healthy(base_url):
                if process.poll() is not None:
                    raise AirflowUIError(f"airflow standalone exited with {process.returncode}; see {log_path}")
                if time.monotonic() > deadline:
                    raise AirflowUIError(f"Airflow was not healthy on {base_url} after {timeout:.0f}s; see {log_path}")
                time.sleep(2)
            yield base_url
        finally:
            _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        except ProcessLookupError:
            pass
    try:  # children that outlived standalone (task runners, serve-logs) share its group
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def admin_password(airflow_home: Path, timeout: float = 60) -> str:
    """The simple auth manager's password for `admin` (written when the api-server starts)."""
    path = airflow_home / "simple_auth_manager_passwords.json.generated"
    deadline = time.monotonic() + timeout
    while True:
        try:
            return json.loads(path.read_text(encoding="utf-8"))["admin"]
        except (FileNotFoundError, ValueError, KeyError):
            if time.monotonic() > deadline:
                raise AirflowUIError(f"no password for admin in {path}") from None
            time.sleep(1)


@contextmanager
def browser_page(chromium: Path, viewport: tuple[int, int] = (1400, 900)) -> Iterator[Any]:
    """A Playwright page in a fresh Chromium profile, with generous waits for a loaded machine."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="clever-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(chromium), args=list(CHROMIUM_FLAGS), headless=True,
            viewport={"width": viewport[0], "height": viewport[1]})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(90_000)
            page.set_default_navigation_timeout(120_000)
            yield page
        finally:
            context.close()


def log_in(page: Any, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/")
    page.get_by_label(re.compile("username", re.I)).fill(username)
    page.get_by_label(re.compile("password", re.I)).fill(password)
    page.get_by_role("button", name=re.compile(r"sign in|log in|login", re.I)).click()
    page.get_by_role("link", name="Dags").first.wait_for()  # the navigation of a logged-in user


def listed_dag_ids(page: Any, base_url: str, expected: set[str], timeout: float = 240) -> list[str]:
    """The DAG ids the DAG list shows, once it shows every one of ``expected`` (the DAG
    processor may still be parsing) or ``timeout`` passed."""
    page.goto(f"{base_url}/dags")
    deadline = time.monotonic() + timeout
    while True:
        page.get_by_text(re.compile(r"^\d+ Dags?$")).first.wait_for()
        hrefs = page.eval_on_selector_all("a[href^='/dags/']", "links => links.map(a => a.getAttribute('href'))")
        dag_ids = sorted({m.group(1) for h in hrefs if (m := re.fullmatch(r"/dags/([^/?#]+)", h or ""))})
        if expected <= set(dag_ids) or time.monotonic() > deadline:
            return dag_ids
        page.wait_for_timeout(3000)
        page.reload()


def trigger_with_params(page: Any, base_url: str, dag_id: str, params: dict[str, Any], run_id: str,
                        screenshot: Path | None = None) -> None:
    """Trigger ``dag_id`` from its trigger form: booleans by their switch, lists one item
    a line in their text area; the run ID under Advanced Options."""
    page.goto(f"{base_url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    for name, value in params.items():
        field_input = dialog.locator(f"[name='element_{name}']")
        if isinstance(value, bool):
            if field_input.is_checked() != value:
                dialog.locator(f"[id='switch:element_{name}']").click()
            if field_input.is_checked() != value:
                raise AirflowUIError(f"the {name} switch did not turn {'on' if value else 'off'}")
        elif isinstance(value, list | tuple):
            field_input.fill("\n".join(str(v) for v in value))
        else:
            field_input.fill(str(value))
    if screenshot is not None:  # the filled-in params, before Advanced Options folds them away
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        dialog.screenshot(path=str(screenshot))
    dialog.get_by_role("button", name="Advanced Options").click()
    dialog.locator("[name='dagRunId']").fill(run_id)
    dialog.get_by_role("button", name="Trigger").last.click()
    page.wait_for_url(re.compile(rf"/dags/{re.escape(dag_id)}/runs/{re.escape(run_id)}$"))


def wait_for_run(page: Any, run_id: str, timeout: float = 600) -> str:
    """The run's state as its page shows it, once terminal (success/failed) or at the
    timeout. The page refreshes itself while the run is active; it is reloaded if its
    state has not changed for a while, in case the refresh stalled."""
    badge = page.get_by_role("heading", name=run_id, exact=True).locator("xpath=..").get_by_test_id("state-badge")
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        badge.wait_for()
        state = badge.inner_text().strip().lower()
        if state in TERMINAL_STATES or time.monotonic() > deadline:
            return state
        if state != last:
            last, since = state, time.monotonic()
        elif time.monotonic() - since > 45:
            page.reload()
            since = time.monotonic()
        page.wait_for_timeout(2000)


def walk_through(chromium: Path, base_url: str, password: str, dag_id: str, params: dict[str, Any],
                 run_id: str, out_dir: Path, expected_dags: set[str], run_timeout: float = 600) -> Walkthrough:
    """Log in as admin, read the DAG list, trigger ``dag_id`` with ``params`` and wait for
    it; screenshots of each step go to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    seen = Walkthrough(run_id=run_id)
    with browser_page(chromium) as page:
        log_in(page, base_url, "admin", password)
        seen.dag_ids = listed_dag_ids(page, base_url, expected_dags)
        page.screenshot(path=str(out_dir / "airflow_dags.png"), full_page=True)
        seen.screenshots.append(out_dir / "airflow_dags.png")
        trigger_with_params(page, base_url, dag_id, params, run_id, screenshot=out_dir / "airflow_trigger_form.png")
        seen.screenshots.append(out_dir / "airflow_trigger_form.png")
        seen.run_state = wait_for_run(page, run_id, run_timeout)
        page.screenshot(path=str(out_dir / "airflow_run.png"), full_page=True)
        seen.screenshots.append(out_dir / "airflow_run.png")
    return seen
