"""The sandbox's API has LOKE's shapes (loke-api.md), read through the service's own LOKE client.

The LOKE client's own tests (test_loke_client.py) and the fakes' self-check already run against
the sandbox (FakeLoke is the sandbox); these cover what `loke-sync sandbox` adds on top: a seeded
organization of realistic size, paged by 1000, with lists, filters and payments.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import urljoin

import pytest
import requests

from app.loke.client import LokeClient, RetryPolicy
from app.loke.errors import LokeError
from app.loke.tokens import MemoryTokenCache, TokenSource
from devtools.sandbox.seeding import seed_org
from devtools.sandbox.server import LokeSandbox
from devtools.sandbox.simulation import Simulator

pytestmark = pytest.mark.timeout(60)

ORG = "org-api"
CUSTOMERS = 2500


@pytest.fixture
def sandbox() -> Iterator[tuple[LokeSandbox, dict[str, str]]]:
    with LokeSandbox("id", "secret") as sandbox:
        lists = seed_org(sandbox, ORG, "Api Bar", CUSTOMERS, [("Big", 1500), ("Small", 3)],
                         random.Random(3))  # fmt: skip
        yield sandbox, lists


@pytest.fixture
def client(sandbox: tuple[LokeSandbox, dict[str, str]]) -> Iterator[LokeClient]:
    url = sandbox[0].url
    with requests.Session() as http:
        tokens = TokenSource(http, url, "id", "secret", 5.0, MemoryTokenCache())
        yield LokeClient(url, tokens, http, timeout=5.0, retry=RetryPolicy(attempts=2))


def test_customers_come_in_pages_of_1000_linked_by_x_next_page(
    sandbox: tuple[LokeSandbox, dict[str, str]], client: LokeClient
) -> None:
    loke, _ = sandbox
    answer = client.request("GET", f"/organizations/{ORG}/customers")
    assert len(answer.json()) == 1000
    next_page = answer.headers["X-Next-Page"]
    assert next_page.startswith(f"{loke.url}/organizations/{ORG}/customers?")
    assert "after=" in next_page
    second = client.request("GET", urljoin(loke.url, next_page))
    assert len(second.json()) == 1000
    assert "X-Next-Page" in second.headers
    assert "X-Total-Count" not in answer.headers  # LOKE sends no total
    created = [c["id"] for c in client.iterate(f"/organizations/{ORG}/customers?sort=created")]
    assert sorted(created) == sorted(loke.snapshot(ORG).customers)
    assert len(created) == CUSTOMERS
    assert created == sorted(created)  # ULID-like ids start with their creation time
    updated = list(client.iterate(f"/organizations/{ORG}/customers?sort=updated"))
    stamps = [c["updatedAt"] for c in updated]
    assert stamps == sorted(stamps, reverse=True)


def test_customers_have_loke_fields_and_can_be_found_by_email(
    sandbox: tuple[LokeSandbox, dict[str, str]], client: LokeClient
) -> None:
    loke, _ = sandbox
    customer = next(iter(loke.snapshot(ORG).customers.values()))
    assert set(customer) == {"id", "email", "firstName", "lastName", "phoneNumber", "dob",
                             "gender", "hasAgreedToMarketing", "createdAt", "updatedAt",
                             "statistics"}  # fmt: skip
    assert set(customer["statistics"]) == {
        "pointsBalance", "totalPointsEarned", "totalPointsRedeemed", "totalSpend",
        "lastPointsEarnedAt", "lastPointsRedeemedAt", "lastSpentAt",
    }  # fmt: skip
    assert customer["createdAt"].endswith("Z")
    assert len(customer["id"]) == 26
    found = client.request(
        "GET", f"/organizations/{ORG}/customers", params={"email": customer["email"]}
    )
    assert found.json() == [customer]
    one = client.request("GET", f"/organizations/{ORG}/customers/{customer['id']}")
    assert one.json() == customer
    with pytest.raises(LokeError) as missing:
        client.request("GET", f"/organizations/{ORG}/customers/nobody")
    assert missing.value.not_found


def test_lists_and_their_members_are_paged_like_everything_else(
    sandbox: tuple[LokeSandbox, dict[str, str]], client: LokeClient
) -> None:
    loke, lists = sandbox
    listed = {
        entry["name"]: entry for entry in client.iterate(f"/organizations/{ORG}/customer-lists")
    }
    assert {name: entry["memberCount"] for name, entry in listed.items()} == {
        "Big": 1500,
        "Small": 3,
    }
    assert set(listed["Big"]) == {"id", "name", "memberCount", "createdAt"}
    big = f"/organizations/{ORG}/customer-lists/{lists['Big']}/members"
    first = client.request("GET", big)
    assert len(first.json()) == 1000
    assert "X-Next-Page" in first.headers
    members = list(client.iterate(big))
    assert {m["id"] for m in members} == set(loke.snapshot(ORG).lists[lists["Big"]][1])
    assert set(members[0]) == {"id", "email", "firstName", "lastName", "phoneNumber", "addedAt"}


def test_payments_sort_by_created_or_by_last_change(
    sandbox: tuple[LokeSandbox, dict[str, str]], client: LokeClient
) -> None:
    loke, _ = sandbox
    loke.subscriptions[(ORG, "x")] = {"id": "s", "ref": "x", "url": "http://127.0.0.1:9/",
                                      "events": [], "secret": "k"}  # fmt: skip
    simulator = Simulator(loke, ORG, random.Random(5))
    while simulator.counts["refund"] < 3:
        simulator.step()
    payments = list(client.iterate(f"/organizations/{ORG}/payments"))
    assert len(payments) == simulator.counts["payment"]
    assert [p["createdAt"] for p in payments] == sorted(p["createdAt"] for p in payments)
    newest = client.request("GET", f"/organizations/{ORG}/payments", params={"sort": "updated"})
    # Newest change first, and a refund counts as one: the loop ended with a refund, so the
    # first payment changed then (or in the same millisecond, which ties sort by id).
    first = newest.json()[0]
    latest_refund = max(
        datetime.fromisoformat(p["refundedAt"]) for p in payments if p.get("refundedAt")
    )
    first_change = max(
        datetime.fromisoformat(first[f]) for f in ("refundedAt", "completedAt", "createdAt")
        if first.get(f)
    )  # fmt: skip
    assert first_change == latest_refund
    assert {"id", "total", "currency", "items", "customer", "locationId"} <= set(payments[0])


def test_subscriptions_are_upserted_listed_and_deleted_by_ref(
    sandbox: tuple[LokeSandbox, dict[str, str]], client: LokeClient
) -> None:
    loke, _ = sandbox
    events = ["customer.created", "payment.completed"]
    created = client.put_subscription(ORG, "mine", "http://127.0.0.1:9/hook", events, "s3cret")
    again = client.put_subscription(ORG, "mine", "http://127.0.0.1:9/hook", events, "n3w")
    assert created == again
    assert set(created) == {"id", "ref", "url", "events"}
    assert client.subscriptions(ORG) == [created]
    assert loke.secret_for(ORG) == "n3w"
    assert loke.subscribed(ORG)
    client.delete_subscription(ORG, "mine")
    assert client.subscriptions(ORG) == []
    assert not loke.subscribed(ORG)
