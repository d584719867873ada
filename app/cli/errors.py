"""How a `loke-sync` command fails: one line `Error: ...` and exit status 1, never a traceback.

The service's own exceptions already say in words what went wrong (the admin API answers with
the same messages), so they are turned into that line in one place, the command group's
invocation, and no command needs a try/except of its own. Anything else is a bug or a failure
nobody foresaw: it gets one line too, naming its type, and `LOKE_SYNC_DEBUG=1` shows the
traceback instead (of any error). Usage mistakes keep click's own answer and exit status 2.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from app.core.config import ConfigError

if TYPE_CHECKING:
    from pydantic import ValidationError

DEBUG_VARIABLE = "LOKE_SYNC_DEBUG"
MAX_CHARACTERS = 500  # a CRM's or a driver's message can be a page long


class OneLineErrors(click.Group):
    """A command group whose commands, and its subgroups' commands, fail in one line."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn what it raised into a ClickException (`Error: ...`, exit 1)."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: already one line, with their own exit status
        except ConfigError as exc:
            # A SystemExit whose message Python prints bare: the same "Error: " line as the rest.
            raise click.ClickException(one_line(str(exc.code))) from None
        except Exception as exc:
            if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
                raise
            raise click.ClickException(describe(exc)) from None


def describe(exc: Exception) -> str:
    """One line that says what went wrong, and where to look."""
    # Imported here, on the way out, so that `loke-sync --help` and the process commands do
    # not pay for the whole service at start-up.
    import redis
    import requests
    from pydantic import ValidationError
    from sqlalchemy.exc import DBAPIError

    from app.backfill.payment_history import InvalidHistory
    from app.core.dispatch import BrokerUnavailable
    from app.core.secrets_box import SecretKeyMismatch
    from app.delivery.destinations import UnknownDestination
    from app.delivery.destinations.base import DestinationRefused
    from app.loke.errors import LokeError
    from app.orgs.connect import DestinationUnavailable, InvalidRequest
    from app.store.db import DatabaseUnavailable

    # Messages meant for the person who gave the input: shown as they are.
    said_in_words = (InvalidRequest, UnknownDestination, DestinationRefused, InvalidHistory,
                     DestinationUnavailable, SecretKeyMismatch)  # fmt: skip
    if isinstance(exc, ValidationError):
        return _validation(exc)
    if isinstance(exc, said_in_words):
        return one_line(str(exc))
    if isinstance(exc, LokeError):
        text = one_line(str(exc))
        return text if "LOKE" in text else f"LOKE: {text}"
    if isinstance(exc, DatabaseUnavailable | DBAPIError):
        return _database(exc)
    if isinstance(exc, BrokerUnavailable):
        return one_line(f"the broker is unavailable (CELERY_BROKER_URL): {exc}")
    if isinstance(exc, redis.RedisError):
        return one_line(f"Redis is unavailable (REDIS_URL): {exc}")
    if isinstance(exc, requests.RequestException):
        return one_line(f"HTTP request failed: {exc}")
    hint = f"(run again with {DEBUG_VARIABLE}=1 for the traceback)"
    return f"{one_line(f'unexpected {type(exc).__name__}: {exc}')} {hint}"


def one_line(text: str) -> str:
    """`text` with its line breaks and runs of spaces made single spaces, cut to a line's size."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_CHARACTERS else flat[: MAX_CHARACTERS - 1] + "…"


def _validation(exc: ValidationError) -> str:
    """The first problem, naming the field (`destination.secret` for a nested one)."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or exc.title
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return one_line(f"invalid {where}: {first['msg']}{more}")


def _database(exc: Exception) -> str:
    """The driver's first line: a refused connection, a locked file, a missing schema."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    from app.store.db import DatabaseUnavailable

    cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) and exc.__cause__ else exc
    driver = getattr(cause, "orig", None) or cause
    first_line = (str(driver).strip().splitlines() or [type(driver).__name__])[0]
    if type(driver).__name__ == "UndefinedTable" or "no such table" in first_line:
        return one_line(f"the database has no schema yet: run loke-sync db upgrade ({first_line})")
    if isinstance(cause, OperationalError | InterfaceError | DatabaseUnavailable):
        return one_line(f"the database is unavailable (DATABASE_URL): {first_line}")
    return one_line(f"the database refused a statement: {first_line}")
