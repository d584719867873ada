"""Screenshots of the browser tests: always under artifacts/screenshots/; with
UPDATE_DOCS_SCREENSHOTS=1 also into docs/screenshots/, where the README shows them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "screenshots"


def keep(page: Page, artifacts: Path, name: str) -> Path:
    """A full-page screenshot `name` (e.g. "org.png"); copied to docs/screenshots/ when asked."""
    shots = artifacts / "screenshots"
    shots.mkdir(exist_ok=True)
    path = shots / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / name)
    return path
