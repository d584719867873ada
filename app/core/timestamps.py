"""LOKE timestamps: parsed once, compared as integers, delivered as ISO 8601 UTC."""

from __future__ import annotations

import datetime as dt

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """LOKE sends offsets; a timestamp without one is taken as UTC rather than local time."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        # e.g. 0001-01-01T00:00+01:00: a ValueError is what validation reports as a bad field.
        raise ValueError("timestamp out of range") from None


def to_micros(value: dt.datetime | None) -> int:
    """Microseconds since the epoch; 0 for unknown, which sorts before every real time."""
    if value is None:
        return 0
    return (as_utc(value) - EPOCH) // dt.timedelta(microseconds=1)


def to_iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, the form sent to the CRM (sub-millisecond digits only if any)."""
    if value is None:
        return None
    value = as_utc(value)
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return value.isoformat(timespec=spec).replace("+00:00", "Z")
