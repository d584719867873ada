"""Browser fixtures: Debian's chromium (installed on first use) driven by Playwright, and the
integration fixtures (PostgreSQL, Redis, real gunicorn and Celery processes)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.integration.conftest import artifacts, database_url, redis_url, stack

__all__ = ["artifacts", "browser", "chromium", "database_url", "page", "redis_url", "stack"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--headless",
]


def _apt_install() -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
        capture_output=True,
        timeout=600,
        check=False,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium: installed with apt-get the first time (Playwright's own download does
    not work here; see docs/tooling.md)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and apt-get is not available to install it")
    done = _apt_install()
    if done.returncode != 0:  # a stale package index: refresh it once and retry
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=300, check=False)
        done = _apt_install()
    if done.returncode != 0 or not CHROMIUM.exists():
        pytest.fail(f"could not install chromium:\n{done.stderr.decode()[-2000:]}")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) at a laptop's screen size."""
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    context.set_default_timeout(15_000)
    opened = context.new_page()
    yield opened
    context.close()
