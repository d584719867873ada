"""The dashboard's last hour in a real browser on the real stack (gunicorn, a Celery worker,
beat): after a backfill and a few webhooks, the home page and the organization's page draw the
charts with the numbers that happened, and the recent-activity feed tells them. Screenshots go
to artifacts/screenshots/ (charts.png, the README's, and charts-org.png)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from app.core.queues import ALL_QUEUES
from devtools.crm import FakeCrm
from tests.browser.screenshots import keep
from tests.conftest import ADMIN_TOKEN
from tests.integration.conftest import connect_org, web_url
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, post_webhook
from tests.support.processes import Stack

pytestmark = pytest.mark.integration

ORG = "org-charts"
CUSTOMERS = 30
WEBHOOKS = 12
THEN = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def chart_values(page: Page, chart: str, shape: str) -> list[float]:
    """The values a chart draws (every bar, or every sampled point), from its SVG."""
    found = page.locator(f"#chart-{chart} svg {shape}").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('data-value'))"
    )
    return [float(value) for value in found]


def reload_until(
    page: Page, url: str, ready: Callable[[], bool], what: str, timeout: float
) -> None:
    """Reload `url` until `ready()` holds, for `timeout` seconds at most."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(url)
        if ready():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} never showed on {url}")
        page.wait_for_timeout(500)


def test_the_charts_and_the_feed_show_the_last_hour_on_the_home_and_org_pages(
    stack: Stack, loke: FakeLoke, crm: FakeCrm, page: Page, artifacts: Path
) -> None:
    stack.web(int(stack.env["PORT"]))
    stack.worker("w1", queues=ALL_QUEUES)
    stack.beat()  # samples backlog and lag at the start of every minute
    loke.add_org(ORG, "Chart Cafe")
    loke.set_customers(ORG, [make_customer(f"cust-{i:03d}", THEN) for i in range(CUSTOMERS)])
    secret = connect_org(stack, loke, crm, ORG)
    assert crm.wait_for(lambda c: len(c.contacts) == CUSTOMERS, timeout=60)
    for i in range(WEBHOOKS):
        edited = make_customer(f"cust-{i:03d}", THEN + dt.timedelta(hours=1), firstName="New")
        event = customer_event("customer.updated", ORG, edited)
        assert post_webhook(f"{web_url(stack)}/webhooks/loke/{ORG}", event, secret)[0] == 202

    page.goto(web_url(stack) + "/")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    home = web_url(stack) + "/"
    reload_until(
        page, home, lambda: sum(chart_values(page, "webhooks", "rect")) == WEBHOOKS,
        f"{WEBHOOKS} webhooks in", 60,
    )  # fmt: skip
    reload_until(
        page, home, lambda: sum(chart_values(page, "delivered", "rect")) >= CUSTOMERS + WEBHOOKS,
        "every operation delivered", 60,
    )  # fmt: skip
    # Beat's sample of the backlog and lag: at the next minute's start at the latest.
    reload_until(page, home, lambda: bool(chart_values(page, "backlog", "circle")), "a sample", 90)

    for chart, title in [
        ("webhooks", "Webhooks in per minute"),
        ("delivered", "Operations delivered per minute"),
        ("backlog", "Backlog (waiting for the CRM)"),
        ("lag", "Lag (since it reached the service)"),
    ]:
        svg = page.locator(f"#chart-{chart} svg")
        expect(svg).to_have_attribute("role", "img")
        expect(svg.locator(".chart-title")).to_have_text(title)
        expect(svg.locator(".axis.x").last).to_contain_text("UTC")
    assert len(chart_values(page, "webhooks", "rect")) == 60  # a bar per minute of the hour
    assert chart_values(page, "lag", "circle")  # sampled with the backlog

    feed = page.locator("#activity")
    # (the webhooks may straddle a minute: a line per minute)
    expect(feed.locator("tr", has_text="webhooks received").first).to_contain_text(ORG)
    expect(feed.locator("tr", has_text="operations delivered").first).to_contain_text(ORG)
    expect(feed.locator("tr", has_text=f"finished: {CUSTOMERS} customers")).to_be_visible()
    page.locator("#last-hour").scroll_into_view_if_needed()
    keep(page, artifacts, "charts.png")  # the README's

    feed.get_by_role("link", name=ORG).first.click()
    expect(page.get_by_role("heading", name="The last hour")).to_be_visible()
    assert sum(chart_values(page, "webhooks", "rect")) == WEBHOOKS
    assert sum(chart_values(page, "delivered", "rect")) >= CUSTOMERS + WEBHOOKS
    expect(page.locator("#delivery")).to_contain_text("Age at LOKE")
    org_feed = page.locator("#activity")
    expect(org_feed.locator("tr", has_text="backfill").first).to_be_visible()
    expect(org_feed.get_by_role("link")).to_have_count(0)  # one organization: no column of it
    keep(page, artifacts, "charts-org.png")
