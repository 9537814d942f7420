"""The browser for the UI tests: Debian's chromium, driven by Playwright for Python (Playwright's own browser
download does not work here). Installed with apt-get when missing; when it cannot be, the test fails saying why
(never a skip)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest

CHROMIUM = "/usr/bin/chromium"


def _ensure_chromium() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing and cannot be installed here (needs apt-get as root): "
                    "install Debian's chromium package (apt-get install -y chromium)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:  # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, timeout=600, env=env)
        done = subprocess.run(install, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0 or not os.path.exists(CHROMIUM):
        pytest.fail(f"apt-get install chromium failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return CHROMIUM


def _in_browser(fn):
    """``fn(browser)`` in a thread of its own: Playwright's sync API runs an event loop in the thread it starts in,
    and the stack's helpers (``asyncio.run``) must keep working in the test's thread."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"playwright is not installed ({exc}): pip install -c constraints/airflow.txt -e '.[test]'")
    executable = _ensure_chromium()
    out: dict = {}

    def run():
        try:
            with sync_playwright() as p:
                try:
                    b = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
                except Exception as exc:  # noqa: BLE001 - whatever stops the browser, the test fails with it
                    out["error"] = RuntimeError(f"chromium ({executable}) did not start under Playwright: {exc}")
                    return
                try:
                    out["value"] = fn(b)
                finally:
                    b.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = exc

    thread = threading.Thread(target=run, name="playwright")
    thread.start()
    thread.join(300)
    if thread.is_alive():
        pytest.fail("the browser did not finish within 300 s")
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture
def in_browser():
    """Run ``fn(browser)`` with a headless Debian chromium under Playwright; returns what ``fn`` returns."""
    return _in_browser
