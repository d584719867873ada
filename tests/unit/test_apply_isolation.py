"""An event that cannot be applied for a reason other than the database (a bug, a payload shape
the mapping did not expect) fails alone: it is marked failed with the reason and dead-lettered
for a person to see and replay, and every other event of its batch is applied once. Both stores.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from flask.testing import FlaskClient
from sqlalchemy import select

from app.core.config import Settings
from app.core.services import Services
from app.ingest import inbox
from app.ingest.apply import drain_inbox
from app.loke.records import Customer as CustomerRecord
from app.mirror import customers
from app.mirror.customers import CustomerChange
from app.store.models import Customer, DeadLetter, InboxEvent, OutboxEntry
from devtools.crm import FakeCrm
from tests.conftest import AUTH, destination
from tests.support.fake_loke import FakeLoke, customer_event, make_customer

ORG = "org-isolation"
NOW = dt.datetime(2026, 8, 1, 12, 0, tzinfo=dt.UTC)
BAD = "C-bad"
GOOD = ("C-1", "C-2", "C-3", "C-4")


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store


@pytest.fixture
def connected(client: FlaskClient, loke: FakeLoke, crm: FakeCrm) -> None:
    loke.add_org(ORG)
    answer = client.put(f"/api/orgs/{ORG}", json={"destination": destination(crm)}, headers=AUTH)
    assert answer.status_code == 201, answer.json


def store_batch(services: Services) -> None:
    """One batch's worth of webhooks, the bad one in the middle."""
    for customer_id in (*GOOD[:2], BAD, *GOOD[2:]):
        body = customer_event("customer.updated", ORG, make_customer(customer_id, NOW))
        inbox.store(services.db, ORG, body["event"], json.dumps(body).encode(), "req")


def a_bug_in_the_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-event mapping raises for one customer, as a payload shape it did not expect
    would."""
    real = customers.change_from_record

    def mapping(record: CustomerRecord) -> CustomerChange:
        if record.id == BAD:
            raise TypeError("unsupported operand type(s) for -: 'NoneType' and 'int'")
        return real(record)

    monkeypatch.setattr(customers, "change_from_record", mapping)


def a_bug_in_the_set_wise_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch's one upsert raises whenever the bad customer is part of it: which event is
    at fault can only be found by applying them one by one."""
    real = customers.apply_customers

    def apply(session: Any, org_id: str, changes: Iterable[CustomerChange]) -> list[str]:
        changes = list(changes)
        if any(change.customer_id == BAD for change in changes):
            raise KeyError("statistics")
        return real(session, org_id, changes)

    monkeypatch.setattr(customers, "apply_customers", apply)


def inbox_rows(services: Services) -> dict[str, InboxEvent]:
    with services.db.transaction() as session:
        rows = session.scalars(select(InboxEvent).order_by(InboxEvent.id))
        return {json.loads(row.body)["customer"]["id"]: row for row in rows}


def letters(services: Services) -> list[DeadLetter]:
    with services.db.transaction() as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def stored_customers(services: Services) -> set[str]:
    with services.db.transaction() as session:
        return set(session.scalars(select(Customer.id)))


def outbox_versions(services: Services) -> dict[str, int]:
    with services.db.transaction() as session:
        return {e.key: e.seq for e in session.scalars(select(OutboxEntry))}


@pytest.mark.parametrize(
    ("bug", "reason"),
    [
        pytest.param(a_bug_in_the_mapping, "TypeError: unsupported operand", id="mapping"),
        pytest.param(a_bug_in_the_set_wise_apply, "KeyError: 'statistics'", id="set-wise-apply"),
    ],
)
def test_an_event_that_raises_fails_alone_and_the_rest_of_its_batch_is_applied_once(
    services: Services,
    client: FlaskClient,
    connected: None,
    monkeypatch: pytest.MonkeyPatch,
    bug: Callable[[pytest.MonkeyPatch], None],
    reason: str,
) -> None:
    bug(monkeypatch)
    store_batch(services)

    result = drain_inbox(services)

    assert (result.applied, result.failed) == (len(GOOD), 1)
    rows = inbox_rows(services)
    assert {cid: row.status for cid, row in rows.items()} == dict.fromkeys(GOOD, "applied") | {
        BAD: "failed"
    }
    error = rows[BAD].error
    assert error is not None
    assert reason in error
    [letter] = letters(services)
    assert (letter.kind, letter.org_id, letter.inbox_id) == ("event", ORG, rows[BAD].id)
    assert letter.reason == rows[BAD].error
    assert stored_customers(services) == set(GOOD)
    versions = outbox_versions(services)

    # Draining again retries nothing: the good events are done, the bad one waits for a person.
    again = drain_inbox(services)
    assert (again.applied, again.failed) == (0, 0)
    assert outbox_versions(services) == versions
    assert len(letters(services)) == 1

    # Shown by the dead-letter API; once the bug is fixed, its replay applies the event.
    shown: Any = client.get(f"/api/dead-letters?orgId={ORG}", headers=AUTH)
    assert [d["reason"] for d in shown.json["deadLetters"]] == [letter.reason]
    monkeypatch.undo()
    assert client.post(f"/api/dead-letters/{letter.id}/replay", headers=AUTH).status_code == 202
    assert (drain_inbox(services).applied, stored_customers(services)) == (1, {*GOOD, BAD})


def test_a_time_limit_is_not_the_events_fault_and_leaves_the_batch_pending(
    services: Services, connected: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_time(*_: Any) -> list[str]:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(customers, "apply_customers", out_of_time)
    store_batch(services)

    with pytest.raises(SoftTimeLimitExceeded):
        drain_inbox(services)

    assert {row.status for row in inbox_rows(services).values()} == {"pending"}
    assert letters(services) == []
