"""What every text from outside must be, and how a refusal reads.

PostgreSQL's text cannot hold the NUL character (U+0000; JSON's "\\u0000"): a value with one
fails the statement that writes it, and every retry of that statement, however often it is
sent again. So such a value is refused where input is read, like one that is too long, with a
message that says so: a webhook is dead-lettered, a backfilled customer (counted as invalid) or
a list member is left out and logged, an admin request gets a 400. (SQLite would store it: both
stores see the same input refused.)
"""

from __future__ import annotations

from typing import TypeGuard

from pydantic import AfterValidator, ValidationError
from pydantic_core import PydanticCustomError

NUL_MESSAGE = "must not contain the NUL character (U+0000)"

ID_CHARS = 64  # the longest id the store keeps (organization, customer, list, payment)

# An id in a URL (organization, customer, list): what the store keeps, no NUL, no slash.
ID_IN_PATH = rf"[^/\x00]{{1,{ID_CHARS}}}"


def _refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", NUL_MESSAGE)
    return value


# For `Annotated[str, ..., NO_NUL]`: as cheap as a `pattern`, with a message a person can read.
NO_NUL = AfterValidator(_refuse_nul)


def is_list_id(value: object) -> TypeGuard[str]:
    """A LOKE list id as the store keeps it (an organization's choice, a list's row)."""
    return isinstance(value, str) and 0 < len(value) <= ID_CHARS and "\x00" not in value


def summary(exc: ValidationError, limit: int = 5) -> str:
    """The first `limit` errors, each as `where: what`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
        for err in exc.errors()[:limit]
    )
