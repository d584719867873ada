"""The dashboard's last hour: charts (webhooks in, operations delivered, backlog, lag) and the
recent-activity feed, overall on the home page and per organization on its page.

Offered to the templates as functions, so the pages that show them ask for them where they are
drawn; each reads at most an hour of per-minute rows and the newest runs and dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint
from markupsafe import Markup

from app.activity import feed
from app.activity.feed import Activity
from app.activity.series import last_hour
from app.core.services import current_services
from app.store.db import utcnow
from app.web import chart_svg
from app.web.dashboard_format import duration, number


@dataclass(frozen=True)
class Chart:
    """One chart of the last hour: an id for the page, and its SVG."""

    id: str
    svg: Markup


def minute_charts(org_id: str | None = None) -> list[Chart]:
    """The last hour of `org_id`, or of every organization (backlogs summed, the worst lag)."""
    with current_services().db.transaction() as session:
        series = last_hour(session, utcnow(), org_id)
    minutes = series.minutes
    return [
        Chart("webhooks", chart_svg.bars("Webhooks in per minute", minutes, series.webhooks,
                                         _count)),
        Chart("delivered", chart_svg.bars("Operations delivered per minute", minutes,
                                          series.delivered, _count)),
        Chart("backlog", chart_svg.line("Backlog (waiting for the CRM)", minutes,
                                        series.backlog, _count)),
        Chart("lag", chart_svg.line("Lag (since it reached the service)", minutes,
                                    series.lag_seconds, duration)),
    ]  # fmt: skip


def _count(value: float) -> str:
    """'1,200' for a whole number (a count's axis), '2.5' otherwise."""
    return number(int(value)) if float(value).is_integer() else number(value)


def recent_activity(org_id: str | None = None) -> list[Activity]:
    """The newest things that happened, of `org_id` or of every organization."""
    with current_services().db.transaction() as session:
        return feed.recent(session, utcnow(), org_id)


def register(blueprint: Blueprint) -> None:
    """Make the charts and the feed available to the blueprint's templates."""
    blueprint.add_app_template_global(minute_charts, "minute_charts")
    blueprint.add_app_template_global(recent_activity, "recent_activity")
