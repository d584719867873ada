"""HubSpot end to end on real parts: gunicorn, two Celery workers, beat, PostgreSQL, Redis, the
fake LOKE and the fake HubSpot on 127.0.0.1 (answering in 50-150 ms, 190 requests per rolling
10 s). A backfill of 5,000 customers (some whose emails HubSpot already holds on contacts
without a LOKE id, some sharing an email with another LOKE customer), live webhooks with
payments and refunds, and two opted-in lists with churn end with HubSpot holding LOKE's truth:
one contact per customer and no duplicate person, every order in its final state with its line
items and contact, every list's members, and every conflict shown."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from app.core.queues import QueueName
from tests.conftest import AUTH, HUBSPOT_TOKEN
from tests.integration.conftest import web_url
from tests.support.fake_hubspot import FakeHubSpot
from tests.support.fake_loke import (
    FakeLoke,
    customer_event,
    make_customer,
    make_payment,
    payment_event,
    post_webhook,
)
from tests.support.processes import Stack

pytestmark = pytest.mark.integration

ORG = "org-hubspot-e2e"
T0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
CUSTOMERS = 5000
KNOWN = range(0, 50)  # HubSpot already has a contact with their email, without a LOKE id
SHARED = range(100, 120)  # each shares its email with the customer 20 places later
PAID = range(0, 100)  # one payment each; the first 30 refunded
REFUNDED = range(0, 30)
UPDATED = range(200, 400)  # changed by webhook after the backfill


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    with FakeHubSpot({HUBSPOT_TOKEN: "portal"}, per_ten_seconds=190, latency=(0.05, 0.15)) as fake:
        yield fake


def cid(n: int) -> str:
    return f"C{n:05d}"


def customers() -> list[dict[str, Any]]:
    made = [make_customer(cid(n), T0 + dt.timedelta(seconds=n)) for n in range(CUSTOMERS)]
    for n in SHARED:
        made[n + 20]["email"] = made[n]["email"].upper()
    return made


def wait_for(what: str, done: Callable[[], bool], seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def api(stack: Stack, method: str, path: str, **kwargs: Any) -> Any:
    answer = requests.request(method, f"{web_url(stack)}/api{path}", headers=AUTH, timeout=30,
                              **kwargs)  # fmt: skip
    assert answer.status_code < 300, answer.text
    return answer.json()


def by_loke_id(hubspot: FakeHubSpot) -> dict[str, dict[str, Any]]:
    held: dict[str, dict[str, Any]] = {}
    for contact in hubspot.contacts():
        loke_id = contact["properties"].get("loke_customer_id")
        if loke_id:
            assert loke_id not in held, f"two contacts for {loke_id}"
            held[loke_id] = {"id": contact["id"], **contact["properties"]}
    return held


def members(hubspot: FakeHubSpot, name: str, ids: dict[str, str]) -> set[str]:
    list_id = hubspot.lists().get(name)
    return set() if list_id is None else {ids[r] for r in hubspot.members(list_id)}


def test_hubspot_holds_lokes_truth_after_backfill_webhooks_payments_and_list_churn(
    stack: Stack, loke: FakeLoke, hubspot: FakeHubSpot
) -> None:
    stack.web(int(stack.env["PORT"]))
    every_queue = tuple(QueueName)
    stack.worker("w1", queues=every_queue)
    stack.worker("w2", queues=every_queue)
    stack.beat()
    truth = customers()
    loke.add_org(ORG)
    loke.set_customers(ORG, truth)
    loke.set_list(ORG, "L1", "Regulars", [cid(n) for n in range(0, 1000)])
    loke.set_list(ORG, "L2", "Lunch club", [cid(n) for n in range(500, 1500)])
    seeded = {cid(n): hubspot.seed_contact({"email": truth[n]["email"], "firstname": "Known"})
              for n in KNOWN}  # fmt: skip
    destination = {"type": "hubspot", "accessToken": HUBSPOT_TOKEN, "baseUrl": hubspot.url,
                   "requestsPerTenSeconds": 190, "maxConcurrentRequests": 4}  # fmt: skip
    api(stack, "PUT", f"/orgs/{ORG}", json={"destination": destination, "lists": ["L1", "L2"]})
    secret = loke.secret_for(ORG)
    wait_for("the backfill", lambda: len(by_loke_id(hubspot)) == CUSTOMERS)
    api(stack, "POST", f"/orgs/{ORG}/lists/sync")

    def first_sync() -> bool:
        ids = {c["id"]: loke_id for loke_id, c in by_loke_id(hubspot).items()}
        return members(hubspot, "LOKE: Regulars", ids) == {cid(n) for n in range(1000)} and (
            members(hubspot, "LOKE: Lunch club", ids) == {cid(n) for n in range(500, 1500)}
        )

    wait_for("the first list sync", first_sync)

    # Live: profile changes, payments, refunds, and a completion arriving after its refund.
    url = f"{web_url(stack)}/webhooks/loke/{ORG}"
    events: list[dict[str, Any]] = []
    for n in UPDATED:
        truth[n] = make_customer(cid(n), T0 + dt.timedelta(days=1, seconds=n), lastName="Moved")
        events.append(customer_event("customer.updated", ORG, truth[n]))
    payments = {n: make_payment(f"P{n:05d}", truth[n], T0 + dt.timedelta(hours=2, seconds=n))
                for n in PAID}  # fmt: skip
    events += [payment_event("completed", ORG, payments[n]) for n in PAID]
    for n in REFUNDED:
        refunded = payments[n] | {"refundedAt": (T0 + dt.timedelta(hours=3)).isoformat(),
                                  "state": "refunded"}  # fmt: skip
        events.append(payment_event("refunded", ORG, refunded))
        events.append(payment_event("completed", ORG, payments[n] | {"refId": "late"}))
    for body in events:
        status, _ = post_webhook(url, body, secret)
        assert status == 202
    # Churn: members leave and join both lists, and one list is renamed.
    loke.set_list(ORG, "L1", "Regulars", [cid(n) for n in range(100, 1100)])
    loke.set_list(ORG, "L2", "Lunch crew", [cid(n) for n in range(400, 1400)])
    api(stack, "POST", f"/orgs/{ORG}/lists/sync")

    def settled() -> bool:
        status = api(stack, "GET", f"/orgs/{ORG}")
        runs = status["listSync"]
        return (
            status["delivery"]["backlog"] == 0
            and status["delivery"]["inFlight"] == 0
            and all((r["lastRun"] or {}).get("status") == "finished" for r in runs)
            and len(hubspot.orders()) == len(PAID)
            and "LOKE: Lunch crew" in hubspot.lists()
        )

    wait_for("the live changes and list churn", settled)

    held = by_loke_id(hubspot)
    assert len(hubspot.contacts()) == CUSTOMERS  # the known people adopted, nobody twice
    for n in KNOWN:
        assert held[cid(n)]["id"] == seeded[cid(n)]
    for n, customer in enumerate(truth):
        contact = held[cid(n)]
        assert contact["lastname"] == customer["lastName"]
        assert contact["loke_updated_at"] == customer["updatedAt"]
    conflicts = api(stack, "GET", f"/orgs/{ORG}/conflicts")["conflicts"]
    assert len(conflicts) == len(SHARED)
    for n in SHARED:  # of each pair exactly one holds the email; the other is a conflict
        emails = [held[cid(m)].get("email") for m in (n, n + 20)]
        assert sorted(bool(e) for e in emails) == [False, True]
    assert api(stack, "GET", f"/orgs/{ORG}")["delivery"]["conflicts"] == len(SHARED)

    orders = {o["properties"]["loke_payment_id"]: o for o in hubspot.orders()}
    assert len(orders) == len(PAID)
    to_contact = dict(hubspot.associations("orders", "contacts"))
    items = hubspot.associations("orders", "line_items")
    assert len(hubspot.line_items()) == len(PAID)
    for n in PAID:
        placed = orders[f"P{n:05d}"]
        expected = "refunded" if n in REFUNDED else "completed"
        assert placed["properties"]["loke_payment_status"] == expected
        assert to_contact[placed["id"]] == held[cid(n)]["id"]
        assert sum(1 for o, _ in items if o == placed["id"]) == 1

    ids = {c["id"]: loke_id for loke_id, c in held.items()}
    assert members(hubspot, "LOKE: Regulars", ids) == {cid(n) for n in range(100, 1100)}
    assert members(hubspot, "LOKE: Lunch crew", ids) == {cid(n) for n in range(400, 1400)}
    assert "LOKE: Lunch club" not in hubspot.lists()
    assert api(stack, "GET", f"/dead-letters?orgId={ORG}")["deadLetters"] == []
    assert hubspot.requests.by_status[429] == 0
