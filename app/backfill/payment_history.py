"""`paymentHistorySince`: how far back a backfill reads an organization's payments.

Given as a number of days (0: none), an ISO date, or null (all of them); 365 days when never
given. Stored as text that keeps those three apart ("days:365", "date:2025-07-01", "all"), so
that null (all) and "not given" (the default) never mean the same.
"""

from __future__ import annotations

import datetime as dt

MAX_DAYS = 36_500


class InvalidHistory(ValueError):
    """A value of paymentHistorySince that means nothing."""


def parse(value: object) -> str:
    """The stored form of a given value; raises InvalidHistory saying what is accepted."""
    if value is None:
        return "all"
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_DAYS:
        return f"days:{value}"
    if isinstance(value, str):
        try:
            return f"date:{dt.date.fromisoformat(value).isoformat()}"
        except ValueError:
            pass
    raise InvalidHistory(
        f"paymentHistorySince must be a number of days (0 to {MAX_DAYS}; 0: none), an ISO date"
        " (YYYY-MM-DD), or null (every payment)"
    )


def as_json(stored: str) -> int | str | None:
    """The value as the API shows it (as it was given)."""
    kind, _, value = stored.partition(":")
    if kind == "days":
        return int(value)
    if kind == "date":
        return value
    return None


def since(stored: str, now: dt.datetime) -> tuple[bool, dt.datetime | None]:
    """Whether to read payments at all, and the oldest change to read back to (None: all)."""
    kind, _, value = stored.partition(":")
    if kind == "days":
        days = int(value)
        return days > 0, now - dt.timedelta(days=days) if days > 0 else None
    if kind == "date":
        return True, dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.UTC)
    return True, None
