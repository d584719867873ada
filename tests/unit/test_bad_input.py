"""Signed bodies that pass the receiver but cannot be applied: each fails alone, visibly, with a
reason naming the field, and never blocks the events around it."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.core.services import Services
from app.ingest.apply import drain_inbox
from app.store.models import Customer, DeadLetter, InboxEvent
from devtools.crm import FakeCrm
from tests.conftest import AUTH, RecordingDispatcher, destination
from tests.support.fake_loke import (
    FakeLoke,
    customer_event,
    make_customer,
    make_payment,
    payment_event,
    sign,
    statistics_event,
)

ORG = "org-bad-input"
NOW = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)
Body = dict[str, Any]


@pytest.fixture
def secret(client: FlaskClient, loke: FakeLoke, crm: FakeCrm) -> str:
    loke.add_org(ORG)
    answer = client.put(f"/api/orgs/{ORG}", json={"destination": destination(crm)}, headers=AUTH)
    assert answer.status_code == 201, answer.json
    return loke.secret_for(ORG)


def raw(body: Body) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def post(client: FlaskClient, secret: str, body: bytes) -> Any:
    headers = {"Content-Type": "application/json", "X-Event-Signature": sign(body, secret)}
    return client.post(f"/webhooks/loke/{ORG}", data=body, headers=headers)


def accept(client: FlaskClient, secret: str, body: Body) -> None:
    answer = post(client, secret, raw(body))
    assert answer.status_code == 202, answer.json
    assert answer.json == {"status": "accepted"}


def good(customer_id: str) -> Body:
    return customer_event("customer.updated", ORG, make_customer(customer_id, NOW))


def customer_with(change: Callable[[Body], None]) -> Body:
    body = good("C-bad")
    change(body["customer"])
    return body


def statistics_with(**fields: Any) -> Body:
    return statistics_event(ORG, make_customer("C-bad", NOW), fields)


def payment_without(name: str) -> Body:
    payment = make_payment("P-bad", make_customer("C-bad", NOW), NOW)
    del payment[name]
    return payment_event("completed", ORG, payment)


def inbox_rows(services: Services) -> list[InboxEvent]:
    with services.db.transaction() as session:
        return list(session.scalars(select(InboxEvent).order_by(InboxEvent.id)))


def letters(services: Services) -> list[DeadLetter]:
    with services.db.transaction() as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def customer_ids(services: Services) -> set[str]:
    with services.db.transaction() as session:
        return set(session.scalars(select(Customer.id)))


def set_field(name: str, value: Any) -> Callable[[Body], None]:
    return lambda customer: customer.__setitem__(name, value)


def drop_field(name: str) -> Callable[[Body], None]:
    return lambda customer: customer.pop(name)


BAD_BODIES = [
    pytest.param(
        {"event": "customer.updated", "customer": "x", "organization": {"id": ORG}},
        "customer:",
        id="customer-not-an-object",
    ),
    pytest.param(customer_with(set_field("id", 5)), "customer.id", id="numeric-id"),
    pytest.param(customer_with(set_field("id", "")), "customer.id", id="empty-id"),
    pytest.param(customer_with(drop_field("updatedAt")), "customer.updatedAt", id="no-updatedAt"),
    pytest.param(
        customer_with(set_field("updatedAt", "last tuesday")),
        "customer.updatedAt",
        id="unparseable-date",
    ),
    pytest.param(
        customer_with(set_field("firstName", "x" * 10_000)),
        "customer.firstName",
        id="10000-char-name",
    ),
    pytest.param(
        customer_with(set_field("hasAgreedToMarketing", "maybe")),
        "customer.hasAgreedToMarketing",
        id="not-a-boolean",
    ),
    pytest.param(customer_with(set_field("dob", "1990-02-30")), "customer.dob", id="no-such-day"),
    pytest.param(
        statistics_with(totalSpend="lots"), "statistics.totalSpend", id="spend-not-a-number"
    ),
    pytest.param(
        statistics_with(lastPointsEarned="soon"),
        "statistics.lastPointsEarned",
        id="old-spelling-bad-date",
    ),
    pytest.param(
        statistics_with(totalPointsEarned=2.5),
        "statistics.totalPointsEarned",
        id="fractional-points",
    ),
    pytest.param(payment_without("total"), "payment.total", id="payment-without-total"),
    pytest.param(payment_without("id"), "payment.id", id="payment-without-id"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_a_body_with_a_wrong_field_fails_alone_with_a_dead_letter_naming_the_field(
    services: Services, client: FlaskClient, secret: str, body: Body, field: str
) -> None:
    accept(client, secret, good("C-before"))
    accept(client, secret, copy.deepcopy(body))
    accept(client, secret, good("C-after"))

    result = drain_inbox(services)

    assert (result.applied, result.failed) == (2, 1)
    before, bad, after = inbox_rows(services)
    assert (before.status, bad.status, after.status) == ("applied", "failed", "applied")
    assert bad.error is not None
    assert field in bad.error
    [letter] = letters(services)
    assert (letter.kind, letter.inbox_id, letter.org_id) == ("event", bad.id, ORG)
    assert letter.reason == bad.error
    assert customer_ids(services) == {"C-before", "C-after"}


def test_the_reason_is_shown_by_the_dead_letter_api(
    services: Services, client: FlaskClient, secret: str
) -> None:
    accept(client, secret, customer_with(drop_field("updatedAt")))
    drain_inbox(services)
    answer: Any = client.get(f"/api/dead-letters?orgId={ORG}", headers=AUTH)
    [letter] = answer.json["deadLetters"]
    assert letter["kind"] == "event"
    assert "customer.updatedAt: Field required" in letter["reason"]


def test_replaying_an_event_dead_letter_sets_the_inbox_row_back_to_pending(
    services: Services, client: FlaskClient, secret: str, dispatcher: RecordingDispatcher
) -> None:
    accept(client, secret, customer_with(set_field("id", 5)))
    drain_inbox(services)
    [letter] = letters(services)
    answer = client.post(f"/api/dead-letters/{letter.id}/replay", headers=AUTH)
    assert answer.status_code == 202
    [row] = inbox_rows(services)
    assert (row.status, row.error, row.processed_at) == ("pending", None, None)
    name, args, kwargs, _ = dispatcher.sent[-1]
    assert (name, args, kwargs) == ("events.drain", (), {"kick": "now"})

    assert drain_inbox(services).failed == 1  # still the same bad body: it fails again, visibly
    assert [r.status for r in inbox_rows(services)] == ["failed"]
    first, second = letters(services)
    assert (first.replay_count, second.replay_count) == (1, 0)
    assert first.replayed_at is not None


def test_numbers_sent_as_strings_are_accepted(
    services: Services, client: FlaskClient, secret: str
) -> None:
    stats = {"totalSpend": "123", "totalPointsEarned": "40", "totalPointsRedeemed": "7"}
    accept(client, secret, statistics_with(pointsBalance="33", **stats))
    payment = make_payment("P-strings", make_customer("C-pay", NOW), NOW, total="1250")
    accept(client, secret, payment_event("completed", ORG, payment))

    result = drain_inbox(services)

    assert (result.applied, result.failed) == (2, 0)
    with services.db.transaction() as session:
        customer = session.get(Customer, (ORG, "C-bad"))
        assert customer is not None
        assert customer.statistics is not None
        assert {k: customer.statistics[k] for k in (*stats, "pointsBalance")} == {
            "totalSpend": 123,
            "totalPointsEarned": 40,
            "totalPointsRedeemed": 7,
            "pointsBalance": 33,
        }
    view: Any = client.get(f"/api/orgs/{ORG}/customers/C-pay", headers=AUTH)
    assert view.json["payments"][0]["total"] == 1250


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"])
def test_a_timestamp_out_of_range_fails_alone(
    services: Services, client: FlaskClient, secret: str, moment: str
) -> None:
    accept(client, secret, good("C-before"))
    accept(client, secret, customer_with(set_field("updatedAt", moment)))
    result = drain_inbox(services)
    assert (result.applied, result.failed) == (1, 1)
    [letter] = letters(services)
    assert "customer.updatedAt" in letter.reason
    assert "out of range" in letter.reason


# -- bodies the receiver must refuse with a 4xx (a 5xx would make LOKE retry for nothing) -------
def test_a_deeply_nested_body_is_a_bad_request(
    services: Services, client: FlaskClient, secret: str
) -> None:
    body = b'{"event":"customer.updated","organization":{"id":"%s"},"x":%s%s}' % (
        ORG.encode(),
        b"[" * 100_000,
        b"]" * 100_000,
    )
    answer = post(client, secret, body)
    assert answer.status_code == 400
    assert answer.json["error"]["message"] == "the body is not JSON"
    assert inbox_rows(services) == []


def test_a_body_that_is_not_utf8_is_a_bad_request(
    services: Services, client: FlaskClient, secret: str
) -> None:
    body = json.dumps(good("C-utf16")).encode("utf-16")
    answer = post(client, secret, body)
    assert answer.status_code == 400
    assert answer.json["error"]["message"] == "the body is not JSON"
    assert inbox_rows(services) == []
