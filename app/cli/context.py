"""The services a command works with: the same ones the admin API uses, built for one command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.core.services import Services
    from app.loke.client import LokeClient


@contextmanager
def service_context() -> Iterator[tuple[Services, LokeClient]]:
    """The services and the LOKE client of an app context of the command's own.

    Imports are inside, so that `loke-sync --help` and the process commands start fast.
    """
    from app.core.services import current_services
    from app.factory import create_app
    from app.loke.client import current_loke_client

    with create_app().app_context():
        services = current_services()
        try:
            yield services, current_loke_client()
        finally:
            services.db.dispose()  # a command run in-process (tests) must not leave connections
