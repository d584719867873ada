"""Webhooks fired by the sandbox: signed so the service's own receiver accepts them, delivered
late, twice or out of order on purpose, and retried on the schedule LOKE documents."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.serving import make_server

from app.factory import create_app
from app.store.migrate import upgrade
from app.store.models import InboxEvent
from devtools.crm import FakeCrm
from devtools.httpserver import LocalServer, Request, Response, json_response
from devtools.sandbox.firer import (
    IMMEDIATE,
    Delivery,
    DeliveryStyle,
    RetrySchedule,
    WebhookFirer,
)
from devtools.sandbox.seeding import seed_org
from devtools.sandbox.server import LokeSandbox
from devtools.sandbox.signing import sign
from devtools.sandbox.simulation import Simulator
from tests.conftest import (
    AUTH,
    LOKE_CLIENT_ID,
    LOKE_CLIENT_SECRET,
    RecordingDispatcher,
    make_settings,
    services_of,
)
from tests.support.fake_loke import FakeLoke
from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(60)

ORG = "org-fired"


class Receiver(LocalServer):
    """Answers the statuses it is given in turn (then 202), noting when each request came."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__()
        self.statuses = statuses
        self.arrivals: list[tuple[float, bytes, str | None]] = []

    def handle(self, request: Request) -> Response:
        signed = request.header("x-event-signature")
        self.arrivals.append((time.monotonic(), request.body, signed))
        status = self.statuses.pop(0) if self.statuses else 202
        return json_response(status, {"status": status})


class WatchedFirer(WebhookFirer):
    """Notes each delivery's due time when it is queued, and the clock at that moment."""

    def __init__(self, schedule: RetrySchedule) -> None:
        super().__init__(schedule, timeout=2)
        self.queued: list[tuple[float, float]] = []  # (now, due)

    def _push_locked(self, due: float, delivery: Delivery) -> None:
        self.queued.append((time.monotonic(), due))
        super()._push_locked(due, delivery)


@pytest.fixture
def connected(tmp_path: Path, crm: FakeCrm) -> Iterator[tuple[Flask, LokeSandbox]]:
    """The real Flask app (receiver, admin API) over real HTTP, connected to a seeded sandbox."""
    with FakeLoke(LOKE_CLIENT_ID, LOKE_CLIENT_SECRET, style=IMMEDIATE) as sandbox:
        seed_org(sandbox, ORG, "Fired Cafe", 20, [], random.Random(1))
        port = free_port()
        settings = make_settings(tmp_path, sandbox, public_url=f"http://127.0.0.1:{port}")
        upgrade(settings.sqlalchemy_url)
        app = create_app(settings, RecordingDispatcher())
        server = make_server("127.0.0.1", port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        destination = {"type": "http", "url": crm.url, "secret": "crm-destination-secret"}
        answer = app.test_client().put(f"/api/orgs/{ORG}", json={"destination": destination},
                                       headers=AUTH)  # fmt: skip
        assert answer.status_code == 201, answer.get_json()
        try:
            yield app, sandbox
        finally:
            server.shutdown()
            thread.join(timeout=5)
            services_of(app).db.dispose()


def test_fired_webhooks_pass_the_services_own_signature_check(
    connected: tuple[Flask, LokeSandbox],
) -> None:
    app, sandbox = connected
    simulator = Simulator(sandbox, ORG, random.Random(2))
    bodies = [body for _ in range(30) for body in simulator.step()]
    assert sandbox.firer.wait_idle(timeout=20)
    delivered = list(sandbox.firer.recent)
    assert len(delivered) == len(bodies)
    assert {d.attempts[-1][1] for d in delivered} == {202}  # the receiver verified every one
    assert {d.outcome for d in delivered} == {"delivered"}
    with services_of(app).db.transaction() as session:
        stored = session.scalar(select(func.count()).select_from(InboxEvent))
    assert stored == len(bodies)


def test_a_wrong_secret_is_refused_by_the_receiver_and_never_retried(
    connected: tuple[Flask, LokeSandbox],
) -> None:
    _, sandbox = connected
    for subscription in sandbox.subscriptions.values():
        subscription["secret"] = "not-the-secret-the-service-stored"
    Simulator(sandbox, ORG, random.Random(2)).step()
    assert sandbox.firer.wait_idle(timeout=10)
    refused = list(sandbox.firer.recent)
    assert refused
    assert [[status for _, status in d.attempts] for d in refused] == [[401]] * len(refused)
    assert sandbox.firer.stats()["refused"] == len(refused)


def test_5xx_and_no_answer_are_retried_5_more_times_backing_off_by_doubling() -> None:
    base = 0.05
    firer = WatchedFirer(RetrySchedule(retries=5, base_seconds=base))
    try:
        with Receiver([503, 500, 502]) as receiver:
            delivery = firer.fire(receiver.url, b'{"event":"x"}', "k", "x")
            assert firer.wait_idle(timeout=10)
            times = [at for at, _, _ in receiver.arrivals]
        assert [status for _, status in delivery.attempts] == [503, 500, 502, 202]
        # Each retry was queued, when an attempt failed, for that attempt's time plus base,
        # 2 x base, 4 x base: the due time lies between the attempt's clock + the wait and the
        # clock at queueing + the wait (read in that order under the firer's lock). Nothing
        # here depends on how fast the machine runs.
        retries = firer.queued[1:]
        failed_at = [at for at, _ in delivery.attempts[:-1]]
        expected = (base, 2 * base, 4 * base)
        for (queued_at, due), attempt_at, wait in zip(retries, failed_at, expected, strict=True):
            assert attempt_at + wait <= due <= queued_at + wait
        # And no retry came before its time.
        for arrived, (_, due) in zip(times[1:], retries, strict=True):
            assert arrived >= due
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(gap >= wait for gap, wait in zip(gaps, expected, strict=True)), gaps
        assert {body for _, body, _ in receiver.arrivals} == {b'{"event":"x"}'}
        assert {signed for _, _, signed in receiver.arrivals} == {sign(b'{"event":"x"}', "k")}

        with Receiver([500] * 10) as always_failing:
            gone = firer.fire(always_failing.url, b"{}", "k", "x")
            assert firer.wait_idle(timeout=10)
        assert (len(gone.attempts), gone.outcome) == (6, "failed")  # 1 + 5 more, then given up

        with Receiver([404]) as not_found:
            refused = firer.fire(not_found.url, b"{}", "k", "x")
            assert firer.wait_idle(timeout=10)
        assert [s for _, s in refused.attempts] == [404]  # a 4xx is never retried

        unreachable = firer.fire(f"http://127.0.0.1:{free_port()}/", b"{}", "k", "x")
        assert firer.wait_idle(timeout=10)
        assert [s for _, s in unreachable.attempts] == [None] * 6
    finally:
        firer.stop()


def test_loke_schedule_is_10_20_40_seconds_and_so_on() -> None:
    assert [RetrySchedule().delay(n) for n in range(1, 6)] == [10, 20, 40, 80, 160]


def test_duplicates_and_overtaking_can_be_switched_on_and_off() -> None:
    rng = random.Random(4)
    assert all(len(IMMEDIATE.plan(rng)) == 1 for _ in range(100))
    assert {IMMEDIATE.plan(rng)[0] for _ in range(100)} == {0.0}
    twice = DeliveryStyle(duplicate_ratio=1.0, out_of_order_ratio=0.0)
    assert all(len(twice.plan(rng)) == 2 for _ in range(100))
    held = DeliveryStyle(min_delay=0, max_delay=0.1, out_of_order_ratio=1.0, out_of_order_delay=3)
    assert min(held.plan(rng)[0] for _ in range(100)) >= 1.0  # later events overtake these


def test_an_event_reaches_every_subscription_that_asked_for_it_and_no_other() -> None:
    with (
        LokeSandbox("id", "secret", style=IMMEDIATE) as sandbox,
        Receiver([]) as wanted,
        Receiver([]) as other,
    ):
        sandbox.add_org(ORG)
        for ref, receiver, event in (("a", wanted, "customer.created"),
                                     ("b", other, "payment.completed")):  # fmt: skip
            sandbox.subscriptions[(ORG, ref)] = {
                "id": ref, "ref": ref, "url": receiver.url, "events": [event], "secret": f"k{ref}"
            }  # fmt: skip
        body = {"event": "customer.created", "customer": {"id": "C1"}, "organization": {"id": ORG}}
        assert sandbox.emit(ORG, body) == 1
        assert sandbox.firer.wait_idle(timeout=10)
        assert len(wanted.arrivals) == 1
        assert other.arrivals == []
        _, raw, signed = wanted.arrivals[0]
        assert signed == sign(raw, "ka")
