"""Delivery to the CRM: batches, coalescing, in-flight changes, retries, dead letters, rate limit,
each flush run directly against the FakeCrm over real HTTP."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.core.config import Settings
from app.core.services import Services
from app.delivery import claims, sender
from app.delivery.sender import FlushResult, flush_org
from app.factory import create_app
from app.ingest import inbox
from app.ingest.apply import drain_inbox
from app.store.migrate import upgrade
from app.store.models import DeliveryState, OutboxEntry, Payment, RateAccount
from devtools.crm import FakeCrm
from tests.conftest import AUTH, RecordingDispatcher, destination, make_settings, services_of
from tests.support import parse_ts
from tests.support.fake_loke import (
    FakeLoke,
    customer_event,
    make_customer,
    make_payment,
    payment_event,
)

ORG = "org-delivery"
NOW = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=10)
PACE = claims.Pace(batch_size=1, max_in_flight=4, account="http:test", seconds_per_request=0.001)


def connect(client: FlaskClient, loke: FakeLoke, crm: FakeCrm, **overrides: Any) -> None:
    loke.add_org(ORG)
    body = {"destination": destination(crm, **overrides)}
    answer = client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH)
    assert answer.status_code in (200, 201), answer.json


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    """Delivery's claims and settles are written per dialect: every test runs on both stores."""
    return settings_on_each_store


@pytest.fixture
def connected(client: FlaskClient, loke: FakeLoke, crm: FakeCrm) -> None:
    connect(client, loke, crm)


def apply(services: Services, *bodies: dict[str, Any]) -> None:
    """Store the events in the inbox as the receiver does, then drain it."""
    for body in bodies:
        raw = json.dumps(body, separators=(",", ":")).encode()
        inbox.store(services.db, ORG, body["event"], raw, "test")
    assert drain_inbox(services).failed == 0


def updated(customer_id: str, minutes: int, **overrides: Any) -> dict[str, Any]:
    moment = NOW + dt.timedelta(minutes=minutes)
    return customer_event("customer.updated", ORG, make_customer(customer_id, moment, **overrides))


def flush(services: Services) -> FlushResult:
    return flush_org(services, ORG, time_budget=10)


def contact(crm: FakeCrm, customer_id: str) -> dict[str, Any]:
    found: dict[str, Any] = crm.contacts[(ORG, customer_id)]
    return found


def statuses(crm: FakeCrm) -> list[int]:
    return [status for _, status, _ in crm.answered]


def delivery_state(services: Services) -> DeliveryState:
    with services.db.transaction() as session:
        found = session.get(DeliveryState, ORG)
        assert found is not None
        return found


def account(services: Services) -> RateAccount:
    """The account of the fake CRM every test connects to (one host: one account)."""
    with services.db.transaction() as session:
        [found] = session.scalars(select(RateAccount))
        return found


def outbox_entries(services: Services) -> list[OutboxEntry]:
    with services.db.transaction() as session:
        return list(session.scalars(select(OutboxEntry).order_by(OutboxEntry.key)))


def delivery_status(client: FlaskClient) -> dict[str, Any]:
    answer: Any = client.get(f"/api/orgs/{ORG}", headers=AUTH).json
    found: dict[str, Any] = answer["delivery"]
    return found


def dead_letters(client: FlaskClient) -> list[dict[str, Any]]:
    answer: Any = client.get(f"/api/dead-letters?orgId={ORG}", headers=AUTH)
    assert answer.status_code == 200
    found: list[dict[str, Any]] = answer.json["deadLetters"]
    return found


def assert_clean(crm: FakeCrm) -> None:
    assert crm.violations() == []
    assert crm.bad_signatures == 0


@pytest.fixture
def make_app(tmp_path: Path, loke: FakeLoke) -> Iterator[Any]:
    """An app of one's own, for settings the shared fixture does not have."""
    made: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        settings = make_settings(tmp_path / f"app{len(made)}", loke, **overrides)
        upgrade(settings.sqlalchemy_url)
        made.append(create_app(settings, RecordingDispatcher()))
        return made[-1]

    yield build
    for flask_app in made:
        services_of(flask_app).db.dispose()


# -- batching -----------------------------------------------------------------------------------
def test_batches_carry_at_most_batch_size_operations(
    services: Services, client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    connect(client, loke, crm, batchSize=3)
    ids = [f"C{n}" for n in range(7)]
    apply(services, *(updated(c, 1) for c in ids))
    result = flush(services)
    assert [len(b["operations"]) for b in crm.batches] == [3, 3, 1]
    assert (result.batches, result.operations) == (3, 7)
    assert {c for _, c in crm.contacts} == set(ids)
    assert_clean(crm)


def test_the_wire_format_is_signed_keyed_by_batch_and_names_the_org(
    services: Services, connected: None, crm: FakeCrm
) -> None:
    apply(services, updated("C1", 1), updated("C2", 1))
    flush(services)
    [batch] = crm.batches
    assert batch["organizationId"] == ORG
    assert parse_ts(batch["sentAt"]) > NOW
    assert [op["type"] for op in batch["operations"]] == ["contact.upsert"] * 2
    assert_clean(crm)  # FakeCrm checks X-Signature and Idempotency-Key == batchId


def test_a_batch_signed_with_another_secret_is_refused_by_the_crm(
    services: Services, client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    connect(client, loke, crm, secret="not-the-crm-secret")
    apply(services, updated("C1", 1))
    flush(services)
    assert crm.bad_signatures == 1
    assert crm.batches == []
    [letter] = dead_letters(client)
    assert letter["detail"]["status"] == 401


def test_a_burst_of_updates_for_one_customer_becomes_one_upsert_of_the_newest_state(
    services: Services, connected: None, crm: FakeCrm
) -> None:
    for minutes in (3, 1, 5, 2, 4):
        apply(services, updated("C1", minutes, firstName=f"v{minutes}"))
    flush(services)
    [batch] = crm.batches
    [op] = batch["operations"]
    assert op["contact"]["firstName"] == "v5"
    assert parse_ts(op["contact"]["updatedAt"]) == NOW + dt.timedelta(minutes=5)
    assert_clean(crm)


def test_a_change_made_while_a_batch_is_in_flight_is_delivered_afterwards(
    services: Services, connected: None, crm: FakeCrm
) -> None:
    apply(services, updated("C1", 1, firstName="first"))
    crm.delay(0.8)
    flusher = threading.Thread(target=flush, args=(services,))
    flusher.start()
    assert crm.wait_for(lambda c: bool(c.in_flight()), timeout=5)
    apply(services, updated("C1", 2, firstName="second"))
    flusher.join(timeout=10)
    assert not flusher.is_alive()
    assert [b["operations"][0]["contact"]["firstName"] for b in crm.batches] == [
        "first",
        "second",
    ]
    assert contact(crm, "C1")["contact"]["firstName"] == "second"
    assert [e.pending for e in outbox_entries(services)] == [False]
    assert_clean(crm)  # no regression, and the second batch waited for the first answer


def test_the_claim_never_gives_one_customer_to_two_concurrent_claims(
    services: Services, connected: None
) -> None:
    customer = make_customer("C1", NOW)
    apply(services, payment_event("completed", ORG, make_payment("P1", customer, NOW)))
    apply(services, updated("C2", 1))
    assert {(e.kind, e.customer_id) for e in outbox_entries(services)} == {
        ("contact", "C1"),
        ("payment", "C1"),
        ("contact", "C2"),
    }
    start = threading.Barrier(2)
    claimed: list[set[str]] = []

    def claim() -> None:
        start.wait()
        for _ in range(50):
            with services.db.transaction() as session:
                found = claims.claim_batch(session, ORG, PACE, LEASE)
                if isinstance(found, claims.Claimed):
                    claimed.append({e.customer_id for e in found.entries})
                    time.sleep(0.2)  # hold the transaction: the other claim waits for it
                    return
            time.sleep(0.01)  # the rate limit said wait (as flush_org does, then claims again)

    workers = [threading.Thread(target=claim) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert sorted(claimed, key=sorted) == [{"C1"}, {"C2"}]

    time.sleep(0.01)
    with services.db.transaction() as session:
        again = claims.claim_batch(session, ORG, dataclasses.replace(PACE, batch_size=10), LEASE)
    assert isinstance(again, claims.Idle)  # the payment of C1 waits for C1's batch


# -- failures -----------------------------------------------------------------------------------
def test_a_400_makes_the_batch_a_dead_letter_at_once_and_a_replay_sends_the_newest_state(
    services: Services,
    client: FlaskClient,
    connected: None,
    crm: FakeCrm,
    dispatcher: RecordingDispatcher,
) -> None:
    crm.reject_customer("C1")
    apply(services, updated("C1", 1, firstName="old"))
    flush(services)
    assert statuses(crm) == [400]  # not retried
    [first] = dead_letters(client)
    assert first["kind"] == "batch"
    assert first["reason"] == "refused: HTTP 400"
    assert first["detail"]["status"] == 400
    assert "customer C1 rejected" in first["detail"]["answer"]
    assert first["detail"]["operations"][0]["contact"]["firstName"] == "old"
    assert flush(services).batches == 0  # out of the queue until replayed

    apply(services, updated("C1", 2, firstName="new"))
    flush(services)
    assert len(dead_letters(client)) == 2
    crm.reset()
    answer = client.post(f"/api/dead-letters/{first['id']}/replay", headers=AUTH)
    assert answer.status_code == 202
    name, args, kwargs, _ = dispatcher.sent[-1]
    assert (name, args, kwargs) == ("delivery.flush", (ORG,), {"kick": "now"})
    flush(services)
    [batch] = crm.batches
    assert batch["operations"][0]["contact"]["firstName"] == "new"
    replayed = next(d for d in dead_letters(client) if d["id"] == first["id"])
    assert replayed["replayCount"] == 1
    assert replayed["replayedAt"] is not None
    assert_clean(crm)


def test_replaying_an_unknown_dead_letter_is_not_found(client: FlaskClient) -> None:
    assert client.post("/api/dead-letters/999/replay", headers=AUTH).status_code == 404


def test_a_429_with_retry_after_pauses_the_crm_account_at_least_that_long(
    services: Services,
    client: FlaskClient,
    connected: None,
    crm: FakeCrm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # However slowly the machine runs, the pause is handed back to the caller, never slept
    # through inside the flush (which would send while this test expects "still throttled").
    monkeypatch.setattr(sender, "SLEEP_WITHIN_TASK", 0.0)
    crm.fail_next(1, status=429, retry_after="2")
    apply(services, updated("C1", 1))
    before = dt.datetime.now(dt.UTC)
    first = flush(services)
    after = dt.datetime.now(dt.UTC)
    assert statuses(crm) == [429]
    throttled_until = account(services).throttled_until
    assert throttled_until is not None
    assert throttled_until >= before + dt.timedelta(seconds=2)
    # The flush resumes when the pause ends: the time left of it, as seen during the flush.
    assert first.resume_in is not None
    left = (throttled_until - after).total_seconds(), (throttled_until - before).total_seconds()
    assert left[0] <= first.resume_in <= left[1]
    assert delivery_status(client)["state"] == "throttled"
    assert [e.attempts for e in outbox_entries(services)] == [0]  # throttling spends no attempt

    assert flush(services).batches == 0  # still throttled
    time.sleep(first.resume_in)
    flush(services)
    assert statuses(crm) == [429, 200]
    assert crm.answered[1][0] - crm.answered[0][0] >= 2
    assert ("org-delivery", "C1") in crm.contacts
    assert_clean(crm)


def test_a_crm_down_past_many_backoffs_pauses_delivery_and_never_makes_dead_letters(
    make_app: Any, loke: FakeLoke, crm: FakeCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender, "SLEEP_WITHIN_TASK", 0.0)
    flask_app: Flask = make_app(
        delivery_max_attempts=3,
        delivery_backoff_base_seconds=0.05,
        delivery_backoff_max_seconds=0.2,
    )
    services = services_of(flask_app)
    client = flask_app.test_client()
    connect(client, loke, crm)
    crm.fail_for(60, status=503)
    apply(services, updated("C1", 1), updated("C2", 1))
    for _ in range(8):  # far more tries than DELIVERY_MAX_ATTEMPTS: an outage spends none
        result = flush(services)
        time.sleep(result.resume_in or 0)
    assert set(statuses(crm)) == {503}
    assert len(statuses(crm)) >= 8
    assert dead_letters(client) == []
    assert [(e.pending, e.attempts) for e in outbox_entries(services)] == [(True, 0), (True, 0)]
    state = delivery_status(client)
    assert state["state"] == "unreachable"
    assert state["unreachableSince"] is not None
    assert state["pausedUntil"] is not None
    assert state["lastError"] == "HTTP 503"
    gauge = 'loke_sync_destination_unreachable_seconds{destination="org-delivery"}'
    assert gauge in client.get("/metrics").get_data(as_text=True)

    crm.fail_for(0)
    time.sleep(0.25)
    flush(services)
    assert {c for _, c in crm.contacts} == {"C1", "C2"}
    state = delivery_status(client)
    assert (state["state"], state["unreachableSince"], state["lastError"]) == ("ok", None, None)
    assert gauge not in client.get("/metrics").get_data(as_text=True)
    assert_clean(crm)


def test_a_refused_connection_is_retried_not_dead_lettered(
    make_app: Any, loke: FakeLoke, crm: FakeCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The flush sleeps through short pauses itself; here the retry must be left for later
    # however slowly the machine runs, so no pause is short enough.
    monkeypatch.setattr(sender, "SLEEP_WITHIN_TASK", 0.0)
    flask_app: Flask = make_app(delivery_backoff_base_seconds=2.0)
    services = services_of(flask_app)
    client = flask_app.test_client()
    connect(client, loke, crm)
    crm.stop()
    apply(services, updated("C1", 1))
    result = flush(services)
    assert dead_letters(client) == []
    [entry] = outbox_entries(services)
    assert (entry.pending, entry.attempts, entry.lease_batch) == (True, 0, None)
    assert (entry.last_error or "").startswith("connection failed")
    assert result.resume_in is not None
    assert delivery_state(services).unreachable_since is not None

    crm.start()  # back, on a new port
    connect(client, loke, crm)
    time.sleep(result.resume_in)
    flush(services)
    assert ("org-delivery", "C1") in crm.contacts
    assert_clean(crm)


def test_the_rate_limit_is_shared_by_concurrent_flushes(
    services: Services, client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    connect(client, loke, crm, batchSize=1, maxRequestsPerSecond=5)
    apply(services, *(updated(f"C{n}", 1) for n in range(5)))
    before = dt.datetime.now(dt.UTC)
    flushers = [threading.Thread(target=flush, args=(services,)) for _ in range(2)]
    for flusher in flushers:
        flusher.start()
    for flusher in flushers:
        flusher.join(timeout=20)
    assert len(crm.batches) == 5
    times = sorted(at for at, _, _ in crm.answered)
    # Claims are 0.2 s apart. One answer may be late (a loaded machine), which shortens the gap
    # after it, but none can be early: five answers span at least four intervals.
    assert times[-1] - times[0] >= 4 * 0.2 - 0.02
    assert account(services).tat >= before + dt.timedelta(seconds=5 * 0.2)
    assert_clean(crm)


# -- payments -----------------------------------------------------------------------------------
def test_payments_without_a_customer_are_stored_but_not_delivered(
    services: Services, connected: None, crm: FakeCrm
) -> None:
    apply(services, payment_event("completed", ORG, make_payment("P-guest", None, NOW)))
    with services.db.transaction() as session:
        stored = session.get(Payment, (ORG, "P-guest"))
        assert stored is not None
        assert stored.customer_id is None
    assert flush(services).batches == 0
    assert crm.answered == []


def test_a_refunded_payment_is_never_delivered_as_completed_again(
    services: Services, connected: None, crm: FakeCrm
) -> None:
    customer = make_customer("C1", NOW)
    completed = make_payment("P1", customer, NOW)
    refunded = make_payment(
        "P1", customer, NOW, refundedAt=NOW + dt.timedelta(hours=1), state="refunded"
    )
    apply(services, payment_event("completed", ORG, completed))
    flush(services)
    apply(services, payment_event("refunded", ORG, refunded))
    flush(services)
    apply(services, payment_event("completed", ORG, completed | {"refId": "late"}))
    flush(services)
    assert [op["status"] for b in crm.batches for op in b["operations"] if "paymentId" in op] == [
        "completed",
        "refunded",
    ]
    assert crm.payments[(ORG, "P1")]["status"] == "refunded"
    assert_clean(crm)
