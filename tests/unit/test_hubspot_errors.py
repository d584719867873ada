"""What HubSpot says about the whole account: a rejected token pauses the destination (shown,
no dead letters) until it works again; 429s slow the token's account, the daily one until the
recheck; 423 waits at least two seconds; gateways' 5xx are an outage; an empty 2xx is not
taken for success. Both stores, against the fake HubSpot."""

from __future__ import annotations

import datetime as dt

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app.core.config import Settings
from app.core.services import Services
from app.delivery.sender import flush_org
from app.store.db import utcnow
from app.store.models import DeliveryState, RateAccount
from tests.conftest import HUBSPOT_TOKEN
from tests.support.fake_hubspot import FakeHubSpot
from tests.support.fake_loke import FakeLoke
from tests.unit.test_delivery import (
    ORG,
    apply,
    dead_letters,
    delivery_status,
    outbox_entries,
    updated,
)
from tests.unit.test_hubspot_contacts import connect, contact, deliver


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store.model_copy(update={"hubspot_daily_recheck_seconds": 600})


@pytest.fixture
def connected(client: FlaskClient, loke: FakeLoke, hubspot: FakeHubSpot) -> None:
    assert connect(client, loke, hubspot).status_code == 201


def throttled_until(services: Services) -> dt.datetime | None:
    with services.db.transaction() as session:
        [account] = session.scalars(select(RateAccount))
        return account.throttled_until


def end_pauses(services: Services) -> None:
    """Time passes: the destination's pause and the account's throttle are over."""
    with services.db.transaction() as session:
        session.execute(update(DeliveryState).values(paused_until=utcnow()))
        session.execute(update(RateAccount).values(throttled_until=None, tat=utcnow()))


def test_a_revoked_token_pauses_delivery_shown_as_token_rejected_until_it_works_again(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    hubspot.revoke(HUBSPOT_TOKEN)
    apply(services, updated("C1", 1))
    result = flush_org(services, ORG, time_budget=5)
    assert result.resume_in is not None
    assert result.resume_in > 0.5
    status = delivery_status(client)
    assert status["state"] == "tokenRejected"
    assert "token rejected" in status["lastError"]
    assert status["backlog"] == 1
    assert dead_letters(client) == []
    assert [e.attempts for e in outbox_entries(services)] == [0]  # no attempt spent
    hubspot.restore(HUBSPOT_TOKEN)
    end_pauses(services)
    deliver(services)
    assert contact(hubspot, "C1")["email"] == "c1@example.com"
    assert delivery_status(client)["state"] == "ok"


def test_saving_a_new_token_lifts_the_token_rejected_pause_at_once(
    services: Services, client: FlaskClient, loke: FakeLoke, connected: None, hubspot: FakeHubSpot
) -> None:
    hubspot.revoke(HUBSPOT_TOKEN)
    apply(services, updated("C1", 1))
    flush_org(services, ORG, time_budget=5)
    assert delivery_status(client)["state"] == "tokenRejected"
    hubspot.restore(HUBSPOT_TOKEN)
    assert connect(client, loke, hubspot, requestsPerTenSeconds=999).status_code == 200
    assert delivery_status(client)["state"] == "ok"
    deliver(services)
    assert contact(hubspot, "C1")


def test_ten_second_429s_throttle_the_tokens_account_and_nothing_is_lost(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    hubspot.storm(0.5)
    apply(services, updated("C1", 1))
    before = utcnow()
    flush_org(services, ORG, time_budget=0.2)
    until = throttled_until(services)
    assert until is not None
    assert until > before
    assert hubspot.requests.rate_limited["TEN_SECONDLY_ROLLING"] >= 1
    deliver(services)
    assert contact(hubspot, "C1")
    assert dead_letters(client) == []


def test_the_daily_limit_closes_the_account_until_the_recheck_without_retrying_in_a_loop(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    hubspot.set_limits(10_000, daily=0)
    apply(services, updated("C1", 1))
    before = utcnow()
    asked = hubspot.requests.total
    result = flush_org(services, ORG, time_budget=5)
    assert hubspot.requests.total == asked + 1  # one try, then closed
    assert result.resume_in is not None
    status = delivery_status(client)
    assert status["state"] == "throttled"
    until = dt.datetime.fromisoformat(status["throttledUntil"])
    # The recheck, or the portal's midnight (UTC here) if that comes first.
    midnight = dt.datetime.combine(before.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    expected = min(before + dt.timedelta(seconds=600), midnight)
    assert expected - dt.timedelta(seconds=5) < until <= expected + dt.timedelta(seconds=5)
    assert result.resume_in > (expected - before).total_seconds() - 10
    assert "daily limit" in status["throttleReason"]
    hubspot.reset_daily()
    hubspot.set_limits(10_000, daily=None)
    end_pauses(services)
    deliver(services)
    assert contact(hubspot, "C1")
    assert dead_letters(client) == []


def test_a_423_waits_at_least_two_seconds(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    hubspot.lock_next(1)
    apply(services, updated("C1", 1))
    before = utcnow()
    flush_org(services, ORG, time_budget=0.2)
    until = throttled_until(services)
    assert until is not None
    assert until >= before + dt.timedelta(seconds=2)
    deliver(services)
    assert contact(hubspot, "C1")


def test_gateway_errors_pause_the_destination_and_delivery_resumes(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    hubspot.fail_next(1, status=502)
    apply(services, updated("C1", 1))
    with services.db.transaction() as session:  # a long outage already: the next pause is long
        session.add(DeliveryState(org_id=ORG, consecutive_failures=5))
    flush_org(services, ORG, time_budget=0.5)
    assert delivery_status(client)["state"] == "unreachable"
    assert hubspot.requests.by_status[502] == 1
    end_pauses(services)
    deliver(services)
    assert contact(hubspot, "C1")
    assert delivery_status(client)["state"] == "ok"
    assert dead_letters(client) == []


def test_an_empty_2xx_for_a_batch_is_a_failure_not_a_delivery(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    hubspot.empty_next(1)
    apply(services, updated("C1", 1))
    flush_org(services, ORG, time_budget=0.5)
    [entry] = outbox_entries(services)
    assert entry.pending
    assert entry.attempts == 1
    assert "named no result" in (entry.last_error or "")
    with services.db.transaction() as session:
        session.execute(update(type(entry)).values(next_attempt_at=utcnow()))
    deliver(services)
    assert contact(hubspot, "C1")


def test_a_daily_limit_budget_closes_the_account_until_the_portals_day_ends(
    services: Services, client: FlaskClient, loke: FakeLoke, hubspot: FakeHubSpot
) -> None:
    # One contact a batch: a request each.
    assert connect(client, loke, hubspot, dailyLimit=3, batchSize=1).status_code == 201
    apply(services, *(updated(f"C{n}", 1) for n in range(5)))
    asked = hubspot.requests.total
    flush_org(services, ORG, time_budget=5)
    assert hubspot.requests.total - asked == 3
    assert len(hubspot.contacts()) == 3
    status = delivery_status(client)
    assert status["state"] == "throttled"
    assert "daily limit of 3 requests" in status["throttleReason"]
    midnight = dt.datetime.combine(utcnow().date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    assert dt.datetime.fromisoformat(status["throttledUntil"]) == midnight
    assert status["backlog"] > 0


def test_a_batch_answered_after_the_daily_429_does_not_hide_why_the_account_is_closed(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    from app.delivery import claims, settle

    apply(services, updated("C1", 1))
    deliver(services)  # the account and the organization's delivery state exist
    with services.db.transaction() as session:
        [account] = session.scalars(select(RateAccount))
        claims.throttle(session, account.key, utcnow() + dt.timedelta(minutes=10),
                        "daily limit reached: You have reached your daily limit.")  # fmt: skip
    with services.db.transaction() as session:  # another batch's answer, settled afterwards
        settle.answered(session, ORG, "another-lease")
    status = delivery_status(client)
    assert status["state"] == "throttled"
    assert "daily limit" in status["throttleReason"]
