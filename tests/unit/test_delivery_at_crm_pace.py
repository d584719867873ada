"""Delivery at a real CRM's pace: several batches in flight, one allowance per CRM account,
answers record by record, the same key for the same batch, deadlines and leases.
Every test runs on SQLite and on PostgreSQL, against the fake CRM over real HTTP."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.core.config import Settings
from app.core.services import Services
from app.delivery import claims, sender, transmit
from app.delivery.destinations.base import Batch, BatchResult, DestinationConfig
from app.delivery.sender import FlushResult, flush_org
from app.store.models import OutboxEntry, RateAccount
from devtools.crm import FakeCrm
from devtools.httpserver import Request, Response
from tests.conftest import AUTH, destination, services_of
from tests.support.fake_loke import FakeLoke
from tests.unit.test_delivery import ORG, apply, connect, dead_letters, outbox_entries, updated


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store


def flush_in_threads(services: Services, senders: int) -> None:
    """Several senders of one organization at once, as several worker threads would run them."""
    threads = [
        threading.Thread(target=flush_org, args=(services, ORG), kwargs={"time_budget": 20})
        for _ in range(senders)
    ]
    for thread in threads:
        thread.start()
    join_all(threads, within=60)


def join_all(threads: list[threading.Thread], within: float) -> None:
    """Wait for every thread, all of them within one generous deadline, and insist they ended
    (a sender still running then is stuck, not slow)."""
    deadline = time.monotonic() + within
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0))
    assert [thread.name for thread in threads if thread.is_alive()] == []


def delivered(crm: FakeCrm) -> set[str]:
    return {customer for org, customer in crm.contacts if org == ORG}


# -- several batches in flight ------------------------------------------------------------------
def test_up_to_max_concurrent_batches_are_in_flight_and_no_customer_is_in_two(
    services: Services, client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    connect(client, loke, crm, batchSize=2, maxConcurrentRequests=3, maxRequestsPerSecond=1000)
    customers = [f"C{n:02}" for n in range(18)]
    # Two changes of the first six customers, the second while the first may be in flight.
    apply(services, *(updated(c, 1) for c in customers))
    crm.delay(0.3)
    most = 0
    watching = threading.Event()

    def watch() -> None:
        nonlocal most
        while not watching.is_set():
            most = max(most, len({b for ids in crm.in_flight().values() for b in ids}))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    sender = threading.Thread(target=flush_in_threads, args=(services, 5))
    sender.start()
    time.sleep(0.4)
    apply(services, *(updated(c, 2, firstName="second") for c in customers[:6]))
    sender.join(timeout=60)
    flush_in_threads(services, 1)  # what arrived after the senders looked
    watching.set()
    watcher.join()
    assert most == 3  # never more than the destination allows, and more than one
    assert delivered(crm) == set(customers)
    assert all(crm.contacts[(ORG, c)]["contact"]["firstName"] == "second" for c in customers[:6])
    assert crm.violations() == []  # no customer in two unanswered batches, none went back
    assert [e.pending for e in outbox_entries(services)] == [False] * len(customers)


def test_the_claim_counts_batches_in_flight_and_says_when_the_destination_is_full(
    services: Services, client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    connect(client, loke, crm)
    apply(services, *(updated(f"C{n}", 1) for n in range(5)))
    pace = claims.Pace(batch_size=1, max_in_flight=2, account="http:t", seconds_per_request=0)
    lease = dt.timedelta(seconds=30)
    with services.db.transaction() as session:
        first = claims.claim_batch(session, ORG, pace, lease)
        second = claims.claim_batch(session, ORG, pace, lease)
        third = claims.claim_batch(session, ORG, pace, lease)
    assert isinstance(first, claims.Claimed)
    assert isinstance(second, claims.Claimed)
    assert isinstance(third, claims.Full)
    assert {e.customer_id for e in first.entries}.isdisjoint(e.customer_id for e in second.entries)


# -- one allowance per CRM account --------------------------------------------------------------
def test_organizations_spending_one_crm_account_share_its_allowance(
    services: Services, client: FlaskClient, loke: FakeLoke, crm: FakeCrm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    orgs = ["org-a", "org-b"]
    for org in orgs:
        loke.add_org(org)
        body = {"destination": destination(crm, batchSize=1, maxRequestsPerSecond=5,
                                           rateLimitKey="one-account")}  # fmt: skip
        assert client.put(f"/api/orgs/{org}", json=body, headers=AUTH).status_code == 201
    for org in orgs:
        for n in range(3):
            event = updated(f"{org}-C{n}", 1)
            event["organization"]["id"] = org
            apply_to(services, org, event)
    slots = record_slots(monkeypatch)
    results: dict[str, FlushResult] = {}

    def flush(org: str) -> None:
        results[org] = flush_org(services, org, time_budget=20)

    threads = [threading.Thread(target=flush, args=(org,)) for org in orgs]
    for thread in threads:
        thread.start()
    join_all(threads, within=30)
    assert [status for _, status, _ in crm.answered] == [200] * 6
    # Six requests at 5 a second for the whole account: the slots of both organizations are
    # a fifth of a second apart, five intervals, although each organization alone would have
    # sent its three in two. (The slots, not the CRM's arrival times: a first request slowed
    # on a loaded machine shortens the span the CRM sees.)
    assert len(slots) == 6
    assert min(later - earlier for earlier, later in pairwise(sorted(slots))) >= FIFTH
    # And no request reached the CRM before its slot (the CRM's wall clock, as the slots').
    answered = sorted(at for org in orgs for at, _ in crm.counts(org).answers)
    assert all(at >= slot.timestamp() for slot, at in zip(sorted(slots), answered, strict=True))
    # Each sender came back because its work was done, not because its time budget ran out
    # (that would ask for a new flush at once): waiting for its share never stalls it.
    assert {org: result.resume_in for org, result in results.items()} == dict.fromkeys(orgs)
    with services.db.transaction() as session:
        assert [a.key for a in session.scalars(select(RateAccount))] == ["http:one-account"]


FIFTH = dt.timedelta(seconds=0.2)


def record_slots(monkeypatch: pytest.MonkeyPatch) -> list[dt.datetime]:
    """The slot in its account's allowance of every batch the senders send, as they send it."""
    slots: list[dt.datetime] = []
    send = transmit.send

    def recording(services: Services, destination: Any, outgoing: transmit.Outgoing) -> None:
        slots.append(outgoing.send_at)
        send(services, destination, outgoing)

    monkeypatch.setattr(transmit, "send", recording)
    return slots


def apply_to(services: Services, org: str, body: dict[str, Any]) -> None:
    import json

    from app.ingest import inbox
    from app.ingest.apply import drain_inbox

    raw = json.dumps(body, separators=(",", ":")).encode()
    inbox.store(services.db, org, body["event"], raw, "test")
    assert drain_inbox(services).failed == 0


def test_a_429_slows_every_organization_on_the_account(
    services: Services, client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    for org in ("org-a", "org-b"):
        loke.add_org(org)
        body = {"destination": destination(crm, rateLimitKey="shared")}
        client.put(f"/api/orgs/{org}", json=body, headers=AUTH)
        event = updated(f"{org}-C1", 1)
        event["organization"]["id"] = org
        apply_to(services, org, event)
    crm.fail_next(1, status=429, retry_after="3")
    flush_org(services, "org-a")
    assert [s for _, s, _ in crm.answered] == [429]
    assert flush_org(services, "org-b").batches == 0  # the other organization waits too
    status: Any = client.get("/api/orgs/org-b", headers=AUTH).json
    assert status["delivery"]["state"] == "throttled"


# -- answers record by record ------------------------------------------------------------------
def test_records_the_crm_refuses_are_dead_letters_of_their_own_and_the_rest_is_delivered(
    services: Services, client: FlaskClient, connected: None, crm: FakeCrm
) -> None:
    crm.refuse_records({"C2"}, reason="email is not valid")
    apply(services, *(updated(f"C{n}", 1) for n in range(1, 4)))
    flush_org(services, ORG)
    assert delivered(crm) == {"C1", "C3"}
    [letter] = dead_letters(client)
    assert letter["kind"] == "operation"
    assert letter["reason"] == "refused: email is not valid"
    assert letter["detail"]["keys"] == [["contact", "C2"]]
    assert [op["customerId"] for op in letter["detail"]["operations"]] == ["C2"]
    assert [(e.key, e.pending) for e in outbox_entries(services)] == [
        ("C1", False), ("C2", False), ("C3", False),
    ]  # fmt: skip

    crm.reset()
    answer = client.post(f"/api/dead-letters/{letter['id']}/replay", headers=AUTH)
    assert answer.status_code == 202
    flush_org(services, ORG)
    assert delivered(crm) == {"C2"}
    assert crm.violations() == []


@pytest.fixture
def connected(client: FlaskClient, loke: FakeLoke, crm: FakeCrm) -> None:
    connect(client, loke, crm)


def test_records_the_crm_defers_are_sent_again_later(
    services: Services, connected: None, crm: FakeCrm
) -> None:
    crm.defer_records({"C1"}, times=2)
    apply(services, updated("C1", 1), updated("C2", 1))
    for _ in range(3):
        result = flush_org(services, ORG)
        time.sleep(result.resume_in or 0)
    assert crm.deferred_records == [(ORG, "C1"), (ORG, "C1")]
    assert delivered(crm) == {"C1", "C2"}
    assert [len(b["operations"]) for b in crm.batches] == [1, 0, 1]
    assert crm.violations() == []


def test_a_record_deferred_past_the_last_attempt_is_a_dead_letter(
    make_app: Any, loke: FakeLoke, crm: FakeCrm
) -> None:
    flask_app: Flask = make_app(delivery_max_attempts=2, delivery_backoff_base_seconds=0.05)
    services = services_of(flask_app)
    client = flask_app.test_client()
    connect(client, loke, crm)
    crm.defer_records({"C1"}, times=5)
    apply(services, updated("C1", 1))
    for _ in range(3):
        result = flush_org(services, ORG)
        time.sleep(result.resume_in or 0)
    [letter] = dead_letters(client)
    assert letter["reason"] == "refused: gave up after 2 attempts: busy, later"
    assert [e.pending for e in outbox_entries(services)] == [False]


# -- the same key for the same batch -------------------------------------------------------------
def test_a_batch_the_crm_did_not_take_is_sent_again_under_the_same_key(
    services: Services, connected: None, crm: FakeCrm
) -> None:
    crm.fail_next(1, status=503, retry_after=None)
    apply(services, updated("C1", 1), updated("C2", 1))
    for _ in range(2):
        result = flush_org(services, ORG)
        time.sleep(result.resume_in or 0)
    first, again = crm.keys_sent
    assert first == again
    assert delivered(crm) == {"C1", "C2"}

    apply(services, updated("C1", 2))  # another state: another batch, another key
    flush_org(services, ORG)
    assert len(set(crm.keys_sent)) == 2


def test_an_answer_lost_to_the_deadline_is_not_applied_twice(
    make_app: Any, loke: FakeLoke, crm: FakeCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender, "SLEEP_WITHIN_TASK", 0.0)  # each flush sends once
    flask_app: Flask = make_app(delivery_timeout_seconds=0.5, delivery_lease_seconds=5)
    services = services_of(flask_app)
    connect(flask_app.test_client(), loke, crm)
    apply(services, updated("C1", 1))
    crm.delay(1.0)  # applied by the CRM after the sender gave up waiting
    result = flush_org(services, ORG)
    assert result.batches == 1
    assert crm.wait_for(lambda c: c.operation_count == 1, timeout=5)
    crm.delay(0)
    time.sleep(result.resume_in or 0)
    flush_org(services, ORG)
    assert len(set(crm.keys_sent)) == 1
    assert crm.duplicate_batch_ids == crm.keys_sent[:1]  # the second send was recognized
    assert crm.operation_count == 1
    assert [e.pending for e in outbox_entries(services)] == [False]


# -- deadlines and leases ----------------------------------------------------------------------
def test_an_answer_trickled_past_the_deadline_is_given_up_and_tried_again(
    make_app: Any, loke: FakeLoke, crm: FakeCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender, "SLEEP_WITHIN_TASK", 0.0)  # one send, then the pause
    flask_app: Flask = make_app(delivery_timeout_seconds=0.5, delivery_lease_seconds=5)
    services = services_of(flask_app)
    connect(flask_app.test_client(), loke, crm)
    apply(services, updated("C1", 1))
    crm.trickle(3.0)  # each byte within the read timeout, the whole well past the deadline
    whole_answer_out = record_when_whole_answers_go_out(crm, monkeypatch)
    flush_org(services, ORG)
    flush_returned = time.monotonic()
    # The sender gave up before the CRM could have sent its last byte: it stopped reading at
    # the deadline, not once the answer was complete (both times on the same clock, so a slow
    # machine only moves them together).
    [last_byte_at_the_earliest] = whole_answer_out
    assert flush_returned < last_byte_at_the_earliest
    [entry] = outbox_entries(services)
    assert entry.pending
    assert entry.lease_batch is None
    assert entry.last_error == "timed out: the answer took too long"
    assert crm.violations() == []


def record_when_whole_answers_go_out(crm: FakeCrm, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """For each answer the CRM trickles, the earliest time.monotonic() its last byte can go out:
    from when the answer is ready, one pause per byte before it."""
    earliest: list[float] = []
    handle = crm.handle

    def recording(request: Request) -> Response:
        response = handle(request)
        size = max(len(response.body), 1)
        earliest.append(time.monotonic() + response.trickle_seconds * (size - 1) / size)
        return response

    monkeypatch.setattr(crm, "handle", recording)
    return earliest


class SlowDestination:
    """A destination whose send lasts until told to answer (a CRM still sending its answer)."""

    def __init__(self) -> None:
        self.answer = threading.Event()

    @property
    def account(self) -> str:
        return "slow:test"

    def requests_for(self, operations: list[dict[str, Any]]) -> int:
        return 1

    def prepare(self) -> DestinationConfig:
        raise NotImplementedError("never connected: the test sends to it directly")

    def send(self, batch: Batch, deadline_seconds: float) -> BatchResult:
        assert self.answer.wait(30)
        return BatchResult()


def test_a_batch_on_the_wire_keeps_its_lease_however_long_it_takes(
    make_app: Any, loke: FakeLoke, crm: FakeCrm
) -> None:
    flask_app: Flask = make_app(delivery_timeout_seconds=0.4, delivery_lease_seconds=0.9)
    services = services_of(flask_app)
    connect(flask_app.test_client(), loke, crm)
    apply(services, updated("C1", 1))
    pace = claims.Pace(batch_size=10, max_in_flight=4, account="slow:test", seconds_per_request=0)
    with services.db.transaction() as session:
        claim = claims.claim_batch(session, ORG, pace, dt.timedelta(seconds=0.9))
    assert isinstance(claim, claims.Claimed)
    outgoing = transmit.Outgoing(
        Batch(claim.batch_id, ORG, [{"type": "contact.upsert", "customerId": "C1"}]),
        lease=claim.lease, keys=[("contact", "C1")], settled_keys=[("contact", "C1")],
        attempts={}, since=[], request_ids=[], pace=pace, send_at=claim.send_at,
        requests_charged=1,
    )  # fmt: skip
    slow = SlowDestination()
    sending = threading.Thread(target=transmit.send, args=(services, slow, outgoing))
    sending.start()
    time.sleep(2.0)  # more than twice the lease
    with services.db.transaction() as session:
        again = claims.claim_batch(session, ORG, pace, dt.timedelta(seconds=0.9))
        [entry] = session.scalars(select(OutboxEntry))
        assert entry.lease_batch == claim.lease
    assert isinstance(again, claims.Full | claims.Idle)  # C1 is still the slow batch's
    slow.answer.set()
    sending.join(timeout=10)
    assert [e.pending for e in outbox_entries(services)] == [False]


@pytest.fixture
def make_app(tmp_path: Any, loke: FakeLoke, settings: Settings) -> Iterator[Any]:
    """An app with settings of its own, on the store of this test run."""
    from app.factory import create_app
    from app.store.migrate import upgrade
    from tests.conftest import RecordingDispatcher, make_settings

    made: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        own = make_settings(tmp_path / f"app{len(made)}", loke, **overrides)
        if settings.database_url:
            own = own.model_copy(update={"database_url": settings.database_url})
        upgrade(own.sqlalchemy_url)
        made.append(create_app(own, RecordingDispatcher()))
        return made[-1]

    yield build
    for flask_app in made:
        services_of(flask_app).db.dispose()
