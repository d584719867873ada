"""Deterministic made-up people: the same seed always gives the same organization."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from devtools.sandbox.payloads import iso, make_customer
from devtools.sandbox.server import LokeSandbox

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)  # seeded histories end a year after this
FIRST = ("Ava", "Noah", "Mia", "Leo", "Zoe", "Kai", "Isla", "Eli", "Ruby", "Jack", "Aria",
         "Omar", "Lily", "Hugo", "Maya", "Finn", "Nora", "Sam", "Ivy", "Theo")  # fmt: skip
LAST = ("Nguyen", "Smith", "Patel", "Wong", "Brown", "Kelly", "Singh", "Taylor", "Rossi",
        "Murphy", "Chen", "Walker", "Ali", "Costa", "Martin", "Kaur", "Lee", "Evans")  # fmt: skip
GENDERS = ("female", "male", "other", None)


def ulid(rng: random.Random, moment: datetime) -> str:
    """A ULID-like id (LOKE's shape): 10 characters of milliseconds, 16 of randomness."""
    millis = int(moment.timestamp() * 1000)
    head = "".join(CROCKFORD[(millis >> shift) & 31] for shift in range(45, -5, -5))
    return head + "".join(rng.choice(CROCKFORD) for _ in range(16))


def random_customer(rng: random.Random, created: datetime, updated: datetime) -> dict[str, Any]:
    """A plausible customer created at `created`, last edited at `updated`, with some history."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    customer_id = ulid(rng, created)
    earned = rng.choice((0, 0, rng.randrange(10, 3000)))
    redeemed = rng.randrange(0, earned + 1) if earned else 0
    spend = earned * 100 + rng.randrange(0, 5000) if earned else 0
    active = created + (updated - created) * rng.random()
    statistics = {
        "pointsBalance": earned - redeemed,
        "totalPointsEarned": earned,
        "totalPointsRedeemed": redeemed,
        "totalSpend": spend,
        "lastPointsEarnedAt": iso(active) if earned else None,
        "lastPointsRedeemedAt": iso(active) if redeemed else None,
        "lastSpentAt": iso(active) if spend else None,
    }
    born = date(rng.randint(1950, 2006), rng.randint(1, 12), rng.randint(1, 28))
    return make_customer(
        customer_id,
        updated,
        createdAt=created,
        firstName=first,
        lastName=last,
        email=f"{first}.{last}.{customer_id[-5:]}@example.com".lower(),
        phoneNumber=f"+614{rng.randrange(10**8):08d}" if rng.random() < 0.9 else None,
        dob=born.isoformat(),
        gender=rng.choice(GENDERS),
        hasAgreedToMarketing=rng.random() < 0.7,
        statistics=statistics,
    )


def seed_org(
    sandbox: LokeSandbox,
    org_id: str,
    name: str,
    customers: int,
    lists: Sequence[tuple[str, int]],
    rng: random.Random,
    epoch: datetime = EPOCH,
) -> dict[str, str]:
    """Give `org_id` `customers` people and lists of the given (name, size); returns
    {list name: list id}. Everything is drawn from `rng`, so a seed reproduces it exactly."""
    span = timedelta(days=365) / max(customers, 1)
    people = []
    for n in range(customers):
        created = epoch + span * n + span * rng.random()
        updated = created + timedelta(days=30) * rng.random()
        people.append(random_customer(rng, created, updated))
    sandbox.add_org(org_id, name)
    sandbox.set_customers(org_id, people)
    ids = [c["id"] for c in people]
    list_ids = {}
    for list_name, size in lists:
        list_id = "L" + ulid(rng, epoch)[10:22]
        sandbox.set_list(org_id, list_id, list_name, rng.sample(ids, min(size, len(ids))))
        list_ids[list_name] = list_id
    return list_ids
