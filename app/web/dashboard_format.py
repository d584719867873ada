"""Presentation helpers for the dashboard's templates: times, durations, numbers, summaries."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def ago(iso: str | None) -> str:
    """'3 min ago' for an ISO timestamp; '—' for none."""
    if not iso:
        return "—"
    when = dt.datetime.fromisoformat(iso)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = (dt.datetime.now(dt.UTC) - when).total_seconds()
    if seconds < 0:
        return "in " + duration(-seconds)
    if seconds < 2:
        return "just now"
    return duration(seconds) + " ago"


def duration(seconds: object) -> str:
    """'0 s', '45 s', '3 min 5 s', '2 h 3 min', '4 d 1 h'; '—' for no number."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return "—"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        big, unit, rest, small = whole // 60, "min", whole % 60, "s"
    elif whole < 86400:
        big, unit, rest, small = whole // 3600, "h", whole % 3600 // 60, "min"
    else:
        big, unit, rest, small = whole // 86400, "d", whole % 86400 // 3600, "h"
    return f"{big} {unit}" + (f" {rest} {small}" if rest else "")


def utc(iso: str | None) -> str:
    """The exact time, for a tooltip: '2026-11-26 10:04:05 UTC'."""
    if not iso:
        return ""
    when = dt.datetime.fromisoformat(iso)
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def number(value: object) -> str:
    """'12,345' or '3.5'; '—' for anything that is not a number (missing, None)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def safe_url(url: str | None) -> str:
    """A destination URL without any user:password part."""
    if not url:
        return "—"
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def last_list_run(list_sync: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most recently started list resync of an organization, if any."""
    runs = [s["lastRun"] for s in list_sync if s.get("lastRun")]
    return max(runs, key=lambda run: run["startedAt"], default=None)


FILTERS = (ago, duration, utc, number, safe_url)
