"""A CRM account's requests per day, counted in the CRM's own day (HubSpot's daily limit is
the portal's, in its time zone), so that a configured budget closes the account before the CRM
would, until its day ends."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from app.store.models import RateAccount


def day_of(now: dt.datetime, zone: str | None) -> tuple[dt.datetime, dt.datetime]:
    """The start and end (UTC) of the day `now` falls in, in `zone` (UTC if unknown)."""
    try:
        tz: dt.tzinfo = zoneinfo.ZoneInfo(zone) if zone else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = dt.UTC
    local = now.astimezone(tz)
    start = dt.datetime.combine(local.date(), dt.time(), tz)
    end = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tz)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def closed_until(
    account: RateAccount, limit: int | None, zone: str | None, now: dt.datetime
) -> dt.datetime | None:
    """The end of the account's day if it has spent `limit` requests of it already."""
    if limit is None:
        return None
    start, end = day_of(now, zone)
    spent = account.day_requests if account.day_start == start else 0
    return end if spent >= limit else None


def spend(account: RateAccount, zone: str | None, now: dt.datetime, requests: int) -> None:
    """Count `requests` in the account's day (a new day starts from zero)."""
    start, _ = day_of(now, zone)
    if account.day_start != start:
        account.day_start, account.day_requests = start, 0
    account.day_requests += requests
