"""`?limit=` and `?offset=` of the admin API, read strictly.

Flask's `type=int` takes " 5" and "٣" (any Unicode digit) and turns "ten" into the default
without a word; and a negative or huge number went on to the database, where PostgreSQL
refuses a negative LIMIT, and a number past its integer, with an error that answered 500. Here
each is ASCII digits within its range, or the caller hears what is allowed (a 400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from app.core.validation import ID_CHARS

MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000  # well inside the 32-bit integer the statements bind it as
_DIGITS = re.compile(r"[0-9]{1,10}")  # ASCII only: str.isdigit() and int() take any script's


class InvalidPaging(ValueError):
    """`limit` or `offset` is not a whole number in its range; the message says which."""


def limit_and_offset(args: Mapping[str, str], default_limit: int = 100) -> tuple[int, int]:
    """The request's limit (1 to MAX_LIMIT) and offset (0 to MAX_OFFSET)."""
    limit = _number(args.get("limit"), default_limit)
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise InvalidPaging(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    offset = _number(args.get("offset"), 0)
    if offset is None or not 0 <= offset <= MAX_OFFSET:
        raise InvalidPaging(f"offset must be a whole number from 0 to {MAX_OFFSET}")
    return limit, offset


def names_nothing_stored(value: str) -> bool:
    """Whether a filter's id is one no store can hold (more than ID_CHARS, or a NUL, which
    PostgreSQL refuses with an error): such a filter matches nothing, without asking."""
    return len(value) > ID_CHARS or "\x00" in value


def _number(value: str | None, default: int) -> int | None:
    if value is None:
        return default
    return int(value) if _DIGITS.fullmatch(value) else None
