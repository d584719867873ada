"""The environment `loke-sync` commands read, for tests that run them in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.credentials import LOKE_CLIENT_ID, LOKE_CLIENT_SECRET
from tests.support.fake_loke import FakeLoke

# Set by the machine running the tests, they would change what a command connects to or prints.
CLEARED = ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "PUBLIC_URL", "LOKE_SYNC_DEBUG")


def embedded_environment(tmp_path: Path, loke: FakeLoke) -> dict[str, str | None]:
    """Embedded SQLite under tmp_path, the fake LOKE, the add-on's credentials."""
    return {
        "VAR_DIR": str(tmp_path),
        "ADMIN_TOKEN": "cli-admin-token",
        "SECRET_KEY": "cli-secret-key",
        "LOKE_API_URL": loke.url,
        "LOKE_AUTH_URL": loke.url,
        "LOKE_CLIENT_ID": LOKE_CLIENT_ID,
        "LOKE_CLIENT_SECRET": LOKE_CLIENT_SECRET,
    }


def use_environment(monkeypatch: pytest.MonkeyPatch, values: dict[str, str | None]) -> None:
    """Exactly these settings (None: unset), and none of CLEARED unless given."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
