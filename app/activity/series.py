"""The last hour, minute by minute, of one organization or of all of them: what the charts
draw. At most an hour of rows per organization is read, however busy the service is."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.activity.minutes import minute_of
from app.store.models import ActivityMinute

MINUTES = 60


@dataclass
class Series:
    """One value per minute, oldest first; None where no sample was taken (backlog, lag)."""

    minutes: list[dt.datetime]
    webhooks: list[int] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    backlog: list[int | None] = field(default_factory=list)
    lag_seconds: list[float | None] = field(default_factory=list)


def last_hour(session: Session, now: dt.datetime, org_id: str | None = None) -> Series:
    """The hour up to `now`'s minute, of `org_id` or (None) of every organization: counts
    summed, backlogs summed, the worst lag."""
    last = minute_of(now)
    minutes = [last - dt.timedelta(minutes=back) for back in range(MINUTES - 1, -1, -1)]
    row = ActivityMinute
    query = (
        select(
            row.minute,
            func.sum(row.webhooks),
            func.sum(row.delivered),
            func.sum(row.backlog),
            func.max(row.lag_seconds),
        )
        .where(row.minute >= minutes[0])
        .group_by(row.minute)
    )
    if org_id is not None:
        query = query.where(row.org_id == org_id)
    found = {minute_of(minute): rest for minute, *rest in session.execute(query)}
    series = Series(minutes=minutes)
    for minute in minutes:
        webhooks, delivered, backlog, lag = found.get(minute, (0, 0, None, None))
        series.webhooks.append(int(webhooks or 0))
        series.delivered.append(int(delivered or 0))
        series.backlog.append(None if backlog is None else int(backlog))
        series.lag_seconds.append(None if lag is None else float(lag))
    return series
