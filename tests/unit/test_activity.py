"""The dashboard's last hour, kept in the database: webhooks counted per applied batch in the
minute they arrived, operations per settled batch, backlog and lag sampled once a minute, the
series the charts draw, the recent-activity feed, their pruning; and what lag means (since a
change reached the service, LOKE's own age apart). On SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.activity import feed, minutes, sampling
from app.activity.series import MINUTES, last_hour
from app.backfill import customers as backfill_pages
from app.core.config import Settings
from app.core.services import Services
from app.core.task_names import BACKFILL_PAGE
from app.delivery.sender import flush_org
from app.ingest.apply import drain_inbox
from app.loke.client import current_loke_client
from app.retention import prune
from app.store.db import utcnow
from app.store.models import ActivityMinute, InboxEvent
from devtools.crm import FakeCrm
from tests.conftest import ADMIN_TOKEN, AUTH, RecordingDispatcher, destination, services_of
from tests.support.fake_loke import FakeLoke, customer_event, make_customer

ORG = "org-activity"
DAY = 86_400
LONG_AGO = utcnow() - dt.timedelta(days=700)  # when LOKE last saw these customers change
IDS = ["C1", "C2", "C3"]


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store  # the upserts and the per-minute queries differ per dialect


@pytest.fixture
def client(app: Flask, loke: FakeLoke, crm: FakeCrm) -> FlaskClient:
    """ORG connected (customers only), its LOKE customers last edited 700 days ago."""
    loke.add_org(ORG, "Old Cafe")
    loke.set_customers(ORG, [make_customer(cid, LONG_AGO) for cid in IDS])
    client = app.test_client()
    body = {"destination": destination(crm), "paymentHistorySince": 0}
    assert client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH).status_code == 201
    return client


def backfill(app: Flask, dispatcher: RecordingDispatcher) -> None:
    """Run the backfill's page tasks as a worker would, until the last page sends none."""
    done = 0
    with app.app_context():
        while len(pages := [a for n, a, _, _ in dispatcher.sent if n == BACKFILL_PAGE]) > done:
            done = len(pages)
            backfill_pages.run_page(services_of(app), current_loke_client(), *pages[-1])


def delivery(client: FlaskClient) -> dict[str, Any]:
    answer: Any = client.get(f"/api/orgs/{ORG}", headers=AUTH).json
    found: dict[str, Any] = answer["delivery"]
    return found


def store_event(services: Services, received_at: dt.datetime, customer_id: str) -> None:
    """A webhook as the receiver stores it, arrived at `received_at`."""
    body = json.dumps(customer_event("customer.updated", ORG, make_customer(customer_id, utcnow())))
    with services.db.transaction() as session:
        session.add(
            InboxEvent(org_id=ORG, body_sha256=hashlib.sha256(body.encode()).hexdigest(),
                       event_type="customer.updated", body=body, status="pending",
                       received_at=received_at, request_id="req")
        )  # fmt: skip


def rows(services: Services) -> dict[dt.datetime, ActivityMinute]:
    with services.db.transaction() as session:
        found = session.scalars(select(ActivityMinute).where(ActivityMinute.org_id == ORG))
        return {row.minute: row for row in found}


def totals(services: Services) -> dict[str, int]:
    """The organization's counts over every minute (a test may straddle two)."""
    found = rows(services).values()
    return {c: sum(getattr(r, c) for r in found) for c in ("batches", "delivered", "refused",
                                                          "paused")}  # fmt: skip


# -- what lag means -----------------------------------------------------------------------------
def test_a_backfilled_customer_last_edited_700_days_ago_lags_seconds_and_is_700_days_old_at_loke(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher
) -> None:
    backfill(app, dispatcher)
    found = delivery(client)
    assert found["backlog"] == len(IDS)
    assert found["lokeAgeSeconds"] >= 700 * DAY
    # Stored moments ago: its lag is how long it has waited here, not LOKE's two years.
    assert found["lagSeconds"] < DAY
    assert found["lagSeconds"] >= found["oldestPendingSeconds"] >= 0


def test_a_webhook_not_applied_yet_is_lag_too(app: Flask, client: FlaskClient) -> None:
    store_event(services_of(app), utcnow() - dt.timedelta(seconds=90), "C9")
    found = delivery(client)
    assert found["backlog"] == 0  # nothing in the outbox yet
    assert found["lagSeconds"] >= 90


def test_the_dashboard_names_the_lag_and_the_age_at_loke(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher
) -> None:
    backfill(app, dispatcher)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").get_data(as_text=True))
    assert csrf is not None
    signin = {"token": ADMIN_TOKEN, "csrf": csrf.group(1), "next": "/"}
    assert client.post("/signin", data=signin).status_code == 303
    home = client.get("/").get_data(as_text=True)
    assert "from LOKE's own timestamp" not in home
    assert "since it reached this service" in home
    org_page = client.get(f"/orgs/{ORG}").get_data(as_text=True)
    assert "Age at LOKE" in org_page
    assert "700 d" in org_page


# -- counting -----------------------------------------------------------------------------------
def test_webhooks_count_when_applied_in_the_minute_they_arrived(
    app: Flask, client: FlaskClient
) -> None:
    services = services_of(app)
    now = minutes.minute_of(utcnow())
    earlier = now - dt.timedelta(minutes=3)
    for index, arrived in enumerate([earlier, earlier + dt.timedelta(seconds=30), now]):
        store_event(services, arrived, f"W{index}")
    assert drain_inbox(services).applied == 3
    found = rows(services)
    assert (found[earlier].webhooks, found[now].webhooks) == (2, 1)


def test_delivered_refused_and_paused_batches_are_counted_in_their_minute(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher, crm: FakeCrm
) -> None:
    services = services_of(app)
    backfill(app, dispatcher)
    crm.refuse_records({"C2"})
    flush_org(services, ORG, time_budget=10)
    assert totals(services) == {"batches": 1, "delivered": 2, "refused": 1, "paused": 0}

    crm.fail_for(60)  # the CRM is down: the next batch is not taken
    store_event(services, utcnow(), "C1")
    drain_inbox(services)
    flush_org(services, ORG, time_budget=1)
    assert totals(services)["paused"] >= 1


def test_a_sample_records_each_connected_organization_backlog_and_lag(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher
) -> None:
    services = services_of(app)
    assert sampling.sample(services) == 1  # connected, nothing waiting: a sample of zeros
    assert [(r.backlog, r.lag_seconds) for r in rows(services).values()] == [(0, 0.0)]
    backfill(app, dispatcher)
    sampling.sample(services)  # the same minute: the newer sample replaces it
    sampled = rows(services)[max(rows(services))]  # (the minute may have turned meanwhile)
    assert sampled.backlog == len(IDS)
    assert sampled.lag_seconds is not None
    assert 0 <= sampled.lag_seconds < DAY


# -- the series, the feed, pruning --------------------------------------------------------------
def add_minute(services: Services, org_id: str, minute: dt.datetime, **values: Any) -> None:
    with services.db.transaction() as session:
        session.add(ActivityMinute(org_id=org_id, minute=minute, **(
            dict.fromkeys(minutes.COUNTED, 0) | values)))  # fmt: skip


def test_the_last_hour_has_one_value_per_minute_of_one_organization_or_of_all(
    app: Flask,
) -> None:
    services = services_of(app)
    now = utcnow()
    last = minutes.minute_of(now)
    five_ago = last - dt.timedelta(minutes=5)
    add_minute(services, "a", five_ago, webhooks=10, delivered=7, backlog=3, lag_seconds=4.0)
    add_minute(services, "b", five_ago, webhooks=5, delivered=1, backlog=2, lag_seconds=9.0)
    add_minute(services, "a", last, webhooks=1)
    add_minute(services, "a", last - dt.timedelta(minutes=90), webhooks=99)  # out of the hour
    with services.db.transaction() as session:
        overall = last_hour(session, now)
        of_a = last_hour(session, now, "a")
    assert len(overall.minutes) == len(overall.webhooks) == len(overall.lag_seconds) == MINUTES
    assert overall.minutes[-1] == last
    assert overall.minutes[0] == last - dt.timedelta(minutes=59)
    at = overall.minutes.index(five_ago)
    assert (overall.webhooks[at], overall.delivered[at]) == (15, 8)
    assert (overall.backlog[at], overall.lag_seconds[at]) == (5, 9.0)  # summed; the worst lag
    assert (of_a.webhooks[at], of_a.backlog[at], of_a.webhooks[-1]) == (10, 3, 1)
    assert sum(overall.webhooks) == 16
    assert overall.backlog[-1] is None  # no sample in that minute: a gap, not a zero


def test_the_feed_tells_webhooks_deliveries_runs_and_dead_letters_newest_first(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher, crm: FakeCrm
) -> None:
    services = services_of(app)
    backfill(app, dispatcher)
    crm.refuse_records({"C3"}, reason="no such list")
    flush_org(services, ORG, time_budget=10)
    store_event(services, utcnow(), "C1")
    drain_inbox(services)
    with services.db.transaction() as session:
        items = feed.recent(session, utcnow(), ORG)
        others = feed.recent(session, utcnow(), "org-other")
    texts = [item.text for item in items]
    assert any(t.startswith("backfill ") and t.endswith(" started") for t in texts)
    assert any("finished: 3 customers" in t for t in texts)
    assert any(
        t.startswith("2 operations delivered in 1 batch · 1 refused in the minute") for t in texts
    )
    assert any(t.startswith("1 webhook received in the minute from ") for t in texts)
    assert any(t.startswith("dead letter ") and "no such list" in t for t in texts)
    assert [item.at for item in items] == sorted((item.at for item in items), reverse=True)
    assert others == []


def test_retention_prunes_minutes_older_than_two_days(app: Flask) -> None:
    services = services_of(app)
    now = minutes.minute_of(utcnow())
    add_minute(services, ORG, now - dt.timedelta(days=3), webhooks=1)
    add_minute(services, ORG, now - dt.timedelta(hours=30), webhooks=2)
    assert prune.prune(services).pruned["activity_minutes"] == 1
    assert [row.webhooks for row in rows(services).values()] == [2]
