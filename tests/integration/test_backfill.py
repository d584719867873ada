"""Backfill and reconciliation on real parts: the fake LOKE is a real HTTP server with paging,
tokens and injected faults; workers, beat, PostgreSQL and Redis are real."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import requests

from app.core.queues import QueueName
from devtools.crm import FakeCrm
from tests.conftest import AUTH
from tests.integration.conftest import connect_org, web_url
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, post_webhook
from tests.support.processes import Stack

ORG = "org-backfill"
T0 = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC)


def iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seed(loke: FakeLoke, count: int) -> list[dict[str, Any]]:
    customers = [
        make_customer(f"B{n:06d}", T0 + dt.timedelta(seconds=n), createdAt=T0 - dt.timedelta(
            days=1, seconds=-n))
        for n in range(count)
    ]  # fmt: skip
    loke.set_customers(ORG, customers)
    return customers


def org_status(stack: Stack) -> dict[str, Any]:
    answer = requests.get(f"{web_url(stack)}/api/orgs/{ORG}", headers=AUTH, timeout=10)
    assert answer.status_code == 200
    result: dict[str, Any] = answer.json()
    return result


def upserts_per_customer(crm: FakeCrm) -> Counter[str]:
    return Counter(
        op["customerId"]
        for batch in crm.batches
        for op in batch["operations"]
        if op["type"] == "contact.upsert"
    )


def wait_for_backfill(stack: Stack, crm: FakeCrm, status: str, timeout: float) -> None:
    def reached(_: FakeCrm) -> bool:
        backfill = org_status(stack)["backfill"]
        return backfill is not None and backfill["status"] == status

    assert crm.wait_for(reached, timeout=timeout, interval=0.5), org_status(stack)


def test_backfill_of_thousands_survives_429_500_timeouts_and_an_expired_token(
    stack: Stack, loke: FakeLoke, crm: FakeCrm
) -> None:
    loke.page_size = 500
    customers = seed(loke, 3200)
    stack.env["LOKE_TIMEOUT_SECONDS"] = "1.5"
    stack.web(int(stack.env["PORT"]))
    connect_org(stack, loke, crm, ORG, batchSize=200, maxRequestsPerSecond=100)
    # The page tasks are queued; faults are armed before any worker takes them.
    loke.fail_next(1, status=429, retry_after="1")
    loke.fail_next(2, status=500)
    loke.delay_next(1, 4.0)  # longer than the client's read timeout
    # Then every request is slow (within the timeout): the token below expires mid-run, not
    # after a run that pages sent ahead have already finished.
    loke.delay_next(12, 0.6)
    stack.worker("w1", queues=(QueueName.BACKFILL, QueueName.DELIVERY))
    stack.worker("w2", queues=(QueueName.EVENTS, QueueName.DELIVERY, QueueName.BACKFILL))
    stack.beat()

    def some_pages(_: FakeCrm) -> bool:
        return int((org_status(stack)["backfill"] or {}).get("pages", 0)) >= 2

    assert crm.wait_for(some_pages, timeout=60, interval=0.3)
    loke.expire_all_tokens()
    wait_for_backfill(stack, crm, "finished", timeout=120)
    expected = {c["id"] for c in customers}
    assert crm.wait_for(lambda c: {cid for _, cid in c.contacts} >= expected, timeout=60)
    counts = upserts_per_customer(crm)
    assert set(counts) == expected
    assert set(counts.values()) == {1}, "every customer arrives exactly once"
    backfill = org_status(stack)["backfill"]
    assert backfill["pages"] == 7 + 1  # and the payment history's one page (empty)
    assert backfill["customers"] == 3200
    assert crm.violations() == []
    assert loke.token_requests >= 2  # the expired token was replaced


def test_a_worker_killed_mid_backfill_resumes_from_its_checkpoint(
    stack: Stack, loke: FakeLoke, crm: FakeCrm
) -> None:
    loke.page_size = 250
    customers = seed(loke, 3000)  # 12 pages
    stack.env["BACKFILL_STALL_SECONDS"] = "3"
    stack.web(int(stack.env["PORT"]))
    loke.delay_next(40, 0.4)  # slow pages, so the kill lands mid-run
    connect_org(stack, loke, crm, ORG)
    victim = stack.worker("w1", queues=(QueueName.BACKFILL, QueueName.DELIVERY))
    stack.beat()

    def some_pages(_: FakeCrm) -> bool:
        return int((org_status(stack)["backfill"] or {}).get("pages", 0)) >= 3

    assert crm.wait_for(some_pages, timeout=60, interval=0.2)
    victim.kill()
    pages_before = org_status(stack)["backfill"]["pages"]
    stack.worker("w2", queues=(QueueName.BACKFILL, QueueName.DELIVERY))
    wait_for_backfill(stack, crm, "finished", timeout=120)
    expected = {c["id"] for c in customers}
    assert crm.wait_for(lambda c: {cid for _, cid in c.contacts} >= expected, timeout=60)
    assert org_status(stack)["backfill"]["pages"] == 12 + 1  # and the payments' (empty) page
    first_page = [
        t for m, t in loke.requests if m == "GET" and "customers" in t and "after" not in t
    ]
    assert len(first_page) == 1, "resumed from the checkpoint, not from the start"
    assert pages_before < 12
    assert crm.violations() == []


def test_webhooks_during_a_backfill_win_when_newer_and_lose_when_older(
    stack: Stack, loke: FakeLoke, crm: FakeCrm
) -> None:
    loke.page_size = 200
    customers = seed(loke, 1000)
    stack.web(int(stack.env["PORT"]))
    loke.delay_next(5, 0.5)
    secret = connect_org(stack, loke, crm, ORG)
    stack.worker("w1", queues=(QueueName.EVENTS, QueueName.DELIVERY, QueueName.BACKFILL))
    stack.worker("w2", queues=(QueueName.EVENTS, QueueName.DELIVERY, QueueName.BACKFILL))
    url = f"{web_url(stack)}/webhooks/loke/{ORG}"
    newer, older = customers[:100], customers[100:200]
    for c in newer:
        fresh = make_customer(c["id"], dt.datetime.fromisoformat(c["updatedAt"]) + dt.timedelta(
            hours=1), firstName="Newer")  # fmt: skip
        assert post_webhook(url, customer_event("customer.updated", ORG, fresh), secret)[0] == 202
    for c in older:
        stale = make_customer(c["id"], T0 - dt.timedelta(days=3), firstName="Older")
        assert post_webhook(url, customer_event("customer.updated", ORG, stale), secret)[0] == 202
    wait_for_backfill(stack, crm, "finished", timeout=90)

    def settled(c: FakeCrm) -> bool:
        if len(c.contacts) < len(customers):
            return False
        names = {cid: op["contact"]["firstName"] for (_, cid), op in c.contacts.items()}
        return all(names[x["id"]] == "Newer" for x in newer) and all(
            names[x["id"]] != "Older" for x in older
        )

    assert crm.wait_for(settled, timeout=60)
    assert crm.violations() == []


def test_reconciliation_heals_customers_whose_webhooks_never_arrived(
    stack: Stack, loke: FakeLoke, crm: FakeCrm
) -> None:
    customers = seed(loke, 300)
    stack.env["RECONCILE_INTERVAL_SECONDS"] = "10"
    stack.env["RECONCILE_OVERLAP_SECONDS"] = "0"
    stack.web(int(stack.env["PORT"]))
    connect_org(stack, loke, crm, ORG)
    stack.worker("w1", queues=(QueueName.EVENTS, QueueName.DELIVERY, QueueName.BACKFILL))
    stack.beat()
    wait_for_backfill(stack, crm, "finished", timeout=60)
    assert crm.wait_for(lambda c: len(c.contacts) == 300, timeout=60)
    # An outage: LOKE changed 25 customers and gave up delivering the webhooks.
    missed = customers[::12]
    now = dt.datetime.now(dt.UTC)
    for c in missed:
        loke.upsert_customer(ORG, make_customer(c["id"], now, firstName="Healed"))

    def healed(c: FakeCrm) -> bool:
        return all(c.contacts[(ORG, x["id"])]["contact"]["firstName"] == "Healed" for x in missed)

    assert crm.wait_for(healed, timeout=60, interval=0.5)
    assert org_status(stack)["reconciliation"]["until"] is not None
    assert crm.violations() == []
    assert all(op["contact"]["updatedAt"] == iso(now) for op in (
        crm.contacts[(ORG, x["id"])] for x in missed))  # fmt: skip
