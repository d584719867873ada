"""What every text from outside must be, and how a refusal reads.

PostgreSQL's text cannot hold the NUL character (U+0000; JSON's "\\u0000"): a value with one
fails the statement that writes it, and every retry of that statement, however often it is
sent again. So such a value is refused where input is read, like one that is too long, with a
message that says so: a webhook is dead-lettered, a backfilled customer or a list member is
left out and counted, an admin request gets a 400. (SQLite would store it: both stores see the
same input refused.)
"""

from __future__ import annotations

from typing import TypeGuard

from pydantic import ValidationError
from pydantic_core import ErrorDetails

# A pattern, so that the check runs inside pydantic's own (Rust) validation: a validator in
# Python per field would cost a list page of a thousand members ~1 ms.
NO_NUL = r"^[^\x00]*$"
NUL_MESSAGE = "must not contain the NUL character (U+0000)"

# An organization id in a URL: what the store keeps (64 characters), no NUL, no slash.
ORG_ID_IN_PATH = r"[^/\x00]{1,64}"


def is_list_id(value: object) -> TypeGuard[str]:
    """A LOKE list id as the store keeps it (an organization's choice, a list's row)."""
    return isinstance(value, str) and 0 < len(value) <= 64 and "\x00" not in value


def describe(err: ErrorDetails) -> str:
    """One validation error as `where: what`."""
    where = ".".join(str(p) for p in err["loc"]) or "body"
    ctx = err.get("ctx") or {}
    if err["type"] == "string_pattern_mismatch" and ctx.get("pattern") == NO_NUL:
        return f"{where}: {NUL_MESSAGE}"
    return f"{where}: {err['msg']}"


def summary(exc: ValidationError, limit: int = 5) -> str:
    """The first `limit` errors, each as `where: what`."""
    return "; ".join(describe(err) for err in exc.errors()[:limit])
