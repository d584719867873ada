"""Streams of LOKE webhooks with a known final truth: for end-to-end tests and benches.

Each customer gets a created event, several profile updates, statistics changes and payments
(some refunded). The truth is the newest state by LOKE's own timestamps, whatever the order of
delivery; duplicates and shuffling are applied on top.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_loke import (
    customer_event,
    make_customer,
    make_payment,
    payment_event,
    statistics_event,
    tiny,
)

START = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Truth:
    """The newest state of everything in a stream, keyed as the recording CRM keys it."""

    contacts: dict[str, str] = field(default_factory=dict)  # customerId -> updatedAt
    statistics: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, str] = field(default_factory=dict)  # paymentId -> status
    payer: dict[str, str] = field(default_factory=dict)  # paymentId -> customerId


@dataclass
class Stream:
    events: list[dict[str, Any]]
    truth: Truth


def make_stream(
    org_id: str,
    customers: int,
    updates_per_customer: int = 4,
    stats_per_customer: int = 3,
    payments_per_customer: int = 1,
    duplicate_ratio: float = 0.1,
    seed: int = 7,
) -> Stream:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    truth = Truth()
    for n in range(customers):
        cid = f"CUST{n:06d}"
        base = START + dt.timedelta(minutes=n)
        for version in range(updates_per_customer + 1):
            updated = base + dt.timedelta(seconds=10 * version)
            record = make_customer(cid, updated, firstName=f"First{version}")
            kind = "customer.created" if version == 0 else "customer.updated"
            events.append(customer_event(kind, org_id, record))
            truth.contacts[cid] = iso(updated)
        for step in range(1, stats_per_customer + 1):
            stats = {
                "pointsBalance": 10 * step,
                "totalPointsEarned": 10 * step,
                "totalPointsRedeemed": 0,
                "totalSpend": 1000 * step,
                "lastPointsEarnedAt": iso(base + dt.timedelta(seconds=5 + step)),
                "lastPointsRedeemedAt": None,
                "lastSpentAt": iso(base + dt.timedelta(seconds=5 + step)),
            }
            events.append(statistics_event(org_id, tiny(record), stats))
            truth.statistics[cid] = stats
        for p in range(payments_per_customer):
            pid = f"PAY{n:06d}{p}"
            completed = base + dt.timedelta(seconds=30 + p)
            payment = make_payment(pid, record, completed)
            events.append(payment_event("payment.completed", org_id, payment))
            truth.payments[pid] = "completed"
            truth.payer[pid] = cid
            if rng.random() < 0.3:
                refunded = dict(payment, refundedAt=iso(completed + dt.timedelta(hours=1)))
                events.append(payment_event("payment.refunded", org_id, refunded))
                truth.payments[pid] = "refunded"
    duplicates = [rng.choice(events) for _ in range(int(len(events) * duplicate_ratio))]
    events.extend(duplicates)
    rng.shuffle(events)
    return Stream(events, truth)


def mismatches(
    truth: Truth, org_id: str, crm_contacts: dict[Any, Any], crm_payments: dict[Any, Any]
) -> list[str]:
    """What the CRM's final state gets wrong, as readable lines (empty when it matches)."""
    problems: list[str] = []
    for cid, updated in truth.contacts.items():
        op = crm_contacts.get((org_id, cid))
        if op is None:
            problems.append(f"{cid}: never delivered")
            continue
        if op["contact"]["updatedAt"] != updated:
            problems.append(f"{cid}: updatedAt {op['contact']['updatedAt']} != {updated}")
        expected = truth.statistics.get(cid)
        got = op.get("statistics") or {}
        if expected is not None and any(got.get(k) != v for k, v in expected.items()):
            problems.append(f"{cid}: statistics {got} != {expected}")
    for pid, status in truth.payments.items():
        op = crm_payments.get((org_id, pid))
        if op is None or op["status"] != status:
            problems.append(f"{pid}: {op and op['status']} != {status}")
    return problems
