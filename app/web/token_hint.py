"""Where the sign-in page tells a person to find the admin token: the file the embedded mode
generated it into, or (None) the ADMIN_TOKEN environment variable of this service."""

from __future__ import annotations

from pathlib import Path

from app.core.admin_token_place import admin_token_file as generated_token_file
from app.core.services import current_services


def admin_token_file() -> Path | None:
    """The absolute path of the file holding ADMIN_TOKEN when the embedded mode generated it
    (the page is read on the service's machine, whatever directory it was started in)."""
    path = generated_token_file(current_services().settings)
    return path.resolve() if path is not None else None
