"""Payment history and payment reconciliation on real parts (gunicorn, Celery workers, beat,
PostgreSQL, Redis, the fake LOKE and a recording CRM): 10,000 historical payments backfilled
through 5% 500s, 5% 429s and tokens that expire every few seconds, the backfill's worker killed
mid-way; then new payments and refunds whose webhooks are lost 5% of the time, healed by one
reconciliation. Every payment reaches the CRM once, in its final state."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import Counter
from typing import Any

import requests

from app.core.queues import QueueName
from devtools.crm import FakeCrm
from tests.conftest import AUTH
from tests.integration.conftest import connect_org, web_url
from tests.support.fake_loke import (
    FakeLoke,
    make_customer,
    make_payment,
    payment_event,
    post_webhook,
)
from tests.support.processes import Stack

ORG = "org-payments"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
CUSTOMERS = 2000
PAYMENTS = 10_000


def org_status(stack: Stack) -> dict[str, Any]:
    answer = requests.get(f"{web_url(stack)}/api/orgs/{ORG}", headers=AUTH, timeout=10)
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def wait_until(what: str, done: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def history(people: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """10,000 payments of the last 300 days; every tenth refunded a day after."""
    made = {}
    for n in range(PAYMENTS):
        completed = NOW - (n % 300 + 2) * DAY + dt.timedelta(seconds=n)
        extra: dict[str, Any] = {}
        if n % 10 == 0:
            extra = {"refundedAt": completed + DAY, "state": "refunded"}
        made[f"H{n:05d}"] = make_payment(f"H{n:05d}", people[n % CUSTOMERS], completed, **extra)
    return made


def final_status(payment: dict[str, Any]) -> str:
    return "refunded" if payment.get("refundedAt") else "completed"


def deliveries(crm: FakeCrm) -> Counter[tuple[str, str]]:
    """(payment, status) pairs the CRM received, counted (a batch resent under its key once)."""
    seen_keys: set[str] = set()
    counted: Counter[tuple[str, str]] = Counter()
    for batch in crm.batches:
        if batch["batchId"] in seen_keys:
            continue
        seen_keys.add(batch["batchId"])
        for op in batch["operations"]:
            if op["type"] == "payment.upsert":
                counted[op["paymentId"], op["status"]] += 1
    return counted


def test_payment_history_and_reconciliation_deliver_every_payment_once_in_its_final_state(
    stack: Stack, loke: FakeLoke, crm: FakeCrm
) -> None:
    loke.page_size = 250
    loke.token_ttl = 3  # tokens expire every few seconds: the client fetches new ones
    people = [make_customer(f"C{n:05d}", NOW - 400 * DAY) for n in range(CUSTOMERS)]
    loke.set_customers(ORG, people)
    payments = history(people)
    loke.set_payments(ORG, payments.values())
    stack.env["RECONCILE_INTERVAL_SECONDS"] = "10"
    stack.env["BACKFILL_STALL_SECONDS"] = "3"  # the killed worker's page task is sent again
    stack.web(int(stack.env["PORT"]))
    reader = stack.worker("w1", queues=(QueueName.BACKFILL,))
    stack.worker("w2", queues=(QueueName.EVENTS, QueueName.DELIVERY, QueueName.BACKFILL))
    stack.beat()
    loke.fail_share({500: 0.05, 429: 0.05})
    connect_org(stack, loke, crm, ORG, batchSize=200, maxRequestsPerSecond=100)

    wait_until("a third of the payments", lambda: (org_status(stack)["backfill"] or {}).get(
        "payments", 0) >= PAYMENTS // 3, timeout=180)  # fmt: skip
    reader.kill()  # mid-way through the payments: the run resumes from its checkpoint
    stack.worker("w3", queues=(QueueName.BACKFILL,))
    wait_until("the backfill", lambda: org_status(stack)["backfill"]["status"] == "finished",
               timeout=240)  # fmt: skip
    assert org_status(stack)["backfill"]["payments"] == PAYMENTS

    def all_delivered() -> bool:
        held = {pid: op["status"] for (org, pid), op in crm.payments.items() if org == ORG}
        return held == {pid: final_status(p) for pid, p in payments.items()}

    wait_until("every historical payment at the CRM", all_delivered, timeout=180)
    counted = deliveries(crm)
    assert set(counted.values()) == {1}, "each payment delivered exactly once"

    # Live: new payments, refunds of old ones; LOKE gives up on 5% of their webhooks. Their
    # times are now's (not the module's import, minutes ago in a full run): the
    # reconciliation reads back to its last start.
    live = dt.datetime.now(dt.UTC).replace(microsecond=0)
    loke.fail_share({})
    secret = loke.secret_for(ORG)
    url = f"{web_url(stack)}/webhooks/loke/{ORG}"
    rng = random.Random(7)
    lost = 0
    for n in range(400):
        if n < 300:
            payment = make_payment(f"N{n:04d}", people[n], live + dt.timedelta(seconds=n))
            event = "completed"
        else:
            refunded_at = (live + dt.timedelta(seconds=n)).isoformat()
            payment = payments[f"H{n * 7 + 1:05d}"] | {"refundedAt": refunded_at,
                                                        "state": "refunded"}  # fmt: skip
            event = "refunded"
        payments[payment["id"]] = payment
        loke.upsert_payment(ORG, payment)
        if rng.random() < 0.05:
            lost += 1
            continue
        status, _ = post_webhook(url, payment_event(event, ORG, payment), secret)
        assert status == 202
    assert lost > 0
    sent_at = dt.datetime.now(dt.UTC)
    wait_until("a reconciliation after the webhooks", lambda: dt.datetime.fromisoformat(
        org_status(stack)["reconciliation"]["until"]) > sent_at, timeout=60)  # fmt: skip
    wait_until("every payment in its final state at the CRM", all_delivered, timeout=120)
    assert org_status(stack)["delivery"]["deadLetters"] == 0
