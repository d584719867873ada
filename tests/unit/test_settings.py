"""Start-up settings: what the service refuses to start with, and what it allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import MIN_SECRET_LENGTH, ConfigError, load_settings

STRONG = "x" * MIN_SECRET_LENGTH
SERVERS = {"database_url": "postgresql://127.0.0.1/test", "celery_broker_url": "redis://x"}


@pytest.mark.parametrize("name", ["admin_token", "secret_key"])
def test_a_short_credential_is_refused_with_servers(tmp_path: Path, name: str) -> None:
    values = {"var_dir": tmp_path, "admin_token": STRONG, "secret_key": STRONG, **SERVERS}
    values[name] = "short-but-not-empty"
    with pytest.raises(ConfigError, match=f"{name.upper()} must be at least 32 characters"):
        load_settings(**values)


def test_strong_credentials_start(tmp_path: Path) -> None:
    settings = load_settings(var_dir=tmp_path, admin_token=STRONG, secret_key=STRONG, **SERVERS)
    assert not settings.private_destinations_allowed


def test_the_embedded_mode_takes_short_credentials_and_private_destinations(
    tmp_path: Path,
) -> None:
    settings = load_settings(var_dir=tmp_path, admin_token="dev", secret_key="dev")
    assert settings.admin_token == "dev"
    assert settings.private_destinations_allowed
