"""Where a person finds the admin token: the file the embedded mode generated it into, or
ADMIN_TOKEN in the service's environment (`loke-sync run` names it in its banner)."""

from __future__ import annotations

import hmac
from pathlib import Path

from app.core.config import Settings

# The name `app.core.config.load_settings` generates the embedded mode's token under, in VAR_DIR.
GENERATED_FILE_NAME = "admin-token"


def admin_token_file(settings: Settings) -> Path | None:
    """The file holding ADMIN_TOKEN when the embedded mode generated it, else None (the token
    came from the environment, and no file tells it)."""
    if not settings.embedded or not settings.admin_token:
        return None
    path = settings.var_dir / GENERATED_FILE_NAME
    try:
        stored = path.read_text().strip()
    except OSError:
        return None
    # A file left from an earlier run is not where today's token is when ADMIN_TOKEN is set.
    if not hmac.compare_digest(stored.encode(), settings.admin_token.encode()):
        return None
    return path


def admin_token_place(settings: Settings) -> str:
    """Where the admin token is, in words: `var/admin-token` or the environment's ADMIN_TOKEN."""
    path = admin_token_file(settings)
    return f"in {path}" if path is not None else "ADMIN_TOKEN from the environment"
