"""The fault suite against the fake HubSpot (destination type `hubspot`): the destination a
scenario connects, and its figures read from the portal's records instead of the recording CRM's
operations.

HubSpot has no organizations, batches or idempotency keys: a scenario's portal holds its one
organization's customers as contacts (by `loke_customer_id`), payments as orders (by
`loke_payment_id`, associated with the payer's contact) and lists as MANUAL lists named
`LIST_PREFIX` + the LOKE list's name. What the recording CRM counts as re-sent or re-applied has
no trace there, so those figures are not measured.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.faults.report import Expected
from tests.support.credentials import HUBSPOT_TOKEN
from tests.support.fake_hubspot import FakeHubSpot

# HubSpot's own pace, slowed down where the real one is too slow for CI: a DAILY 429 closes the
# account this long before one retry (3600 s in production).
HUBSPOT_CLOCKS = {"HUBSPOT_DAILY_RECHECK_SECONDS": "4"}
PER_TEN_SECONDS = 100  # the fake portal's limit per token, and what the destination is told
LATENCY = (0.1, 0.3)  # seconds HubSpot takes to answer one call
LIST_PREFIX = "LOKE: "
ACCOUNT = "portal-1"

STATISTICS = {  # LOKE statistic -> (HubSpot property, how the destination writes it)
    "pointsBalance": ("loke_points_balance", "number"),
    "totalPointsEarned": ("loke_total_points_earned", "number"),
    "totalPointsRedeemed": ("loke_total_points_redeemed", "number"),
    "totalSpend": ("loke_total_spend", "cents"),
    "lastPointsEarnedAt": ("loke_last_points_earned_at", "datetime"),
    "lastPointsRedeemedAt": ("loke_last_points_redeemed_at", "datetime"),
    "lastSpentAt": ("loke_last_spent_at", "datetime"),
}


def fake_portal() -> FakeHubSpot:
    """A portal with the suite's limits and a real HubSpot's latency (not started yet)."""
    return FakeHubSpot(tokens={HUBSPOT_TOKEN: ACCOUNT}, per_ten_seconds=PER_TEN_SECONDS,
                       latency=LATENCY)  # fmt: skip


def destination(fake: FakeHubSpot, max_in_flight: int) -> dict[str, Any]:
    """The organization's destination: the fake portal, paced at its limit."""
    return {"type": "hubspot", "accessToken": HUBSPOT_TOKEN, "baseUrl": fake.url,
            "requestsPerTenSeconds": PER_TEN_SECONDS, "listNamePrefix": LIST_PREFIX,
            "maxConcurrentRequests": max_in_flight}  # fmt: skip


@dataclass
class Portal:
    """One consistent-enough read of the portal: contacts by LOKE id (every record of each),
    orders by payment id, the order -> contact associations, and list members by LOKE id."""

    contacts: dict[str, list[dict[str, str]]]
    strays: int  # contacts without a LOKE id (nobody seeded any: each is a duplicate)
    orders: dict[str, list[tuple[str, dict[str, str]]]]  # payment id -> [(order id, props)]
    line_items: Counter[str]  # loke_line_item_id -> records holding it
    order_contacts: set[tuple[str, str]]  # (order id, contact id)
    record_ids: dict[str, str]  # contact record id -> its LOKE customer id
    lists: dict[str, set[str]]  # HubSpot list name -> member LOKE customer ids

    @classmethod
    def read(cls, fake: FakeHubSpot) -> Portal:
        contacts: dict[str, list[dict[str, str]]] = {}
        record_ids: dict[str, str] = {}
        strays = 0
        for record in fake.contacts():
            cid = record["properties"].get("loke_customer_id")
            if cid is None:
                strays += 1
                continue
            contacts.setdefault(cid, []).append(record["properties"])
            record_ids[record["id"]] = cid
        orders: dict[str, list[tuple[str, dict[str, str]]]] = {}
        for record in fake.orders():
            pid = record["properties"].get("loke_payment_id", "")
            orders.setdefault(pid, []).append((record["id"], record["properties"]))
        line_items = Counter(
            r["properties"].get("loke_line_item_id", "") for r in fake.line_items()
        )
        lists = {
            name: {record_ids.get(m, f"record {m}") for m in fake.members(list_id)}
            for name, list_id in fake.lists().items()
        }
        return cls(contacts, strays, orders, line_items, fake.associations("orders", "contacts"),
                   record_ids, lists)  # fmt: skip


def problems(expected: Expected, portal: Portal, loke_names: dict[str, str]) -> list[str]:
    """What the portal gets wrong, as readable lines (empty when it holds the truth)."""
    return [problem for _, problem in _checked(expected, portal, loke_names) if problem]


def compare(expected: Expected, portal: Portal, loke_names: dict[str, str]) -> dict[str, int]:
    """delivered / lost / stale / duplicates as `report.compare` counts them at the recording
    CRM (re-sent and re-applied leave no trace at HubSpot)."""
    counts = dict.fromkeys(("delivered", "lost", "stale", "duplicates"), 0)
    for found, problem in _checked(expected, portal, loke_names):
        counts["lost" if not found else "stale" if problem else "delivered"] += 1
    truth = expected.truth
    counts["duplicates"] = (
        portal.strays
        + sum(len(held) - 1 for held in portal.contacts.values())
        + sum(1 for cid in portal.contacts if cid not in truth.contacts)
        + sum(len(held) - 1 for held in portal.orders.values())
        + sum(1 for pid in portal.orders if pid not in truth.payments)
        + sum(n - 1 for n in portal.line_items.values())
        + sum(
            len(portal.lists.get(LIST_PREFIX + loke_names[list_id], set()) - members)
            for list_id, members in expected.lists.items()
        )
    )
    return counts


def _checked(
    expected: Expected, portal: Portal, loke_names: dict[str, str]
) -> list[tuple[bool, str]]:
    """Each expected item (contact, payment, list membership): whether HubSpot holds it, and
    what is wrong with it ("" when nothing)."""
    truth = expected.truth
    checked: list[tuple[bool, str]] = []
    for cid, updated in truth.contacts.items():
        held = portal.contacts.get(cid)
        if not held:
            checked.append((False, f"{cid}: no contact"))
            continue
        props, wrong = held[-1], []
        if _when(props.get("loke_updated_at")) != _when(updated):
            wrong.append(f"loke_updated_at {props.get('loke_updated_at')} != {updated}")
        stats = _wrong_statistics(props, truth.statistics.get(cid))
        if stats:
            wrong.append(f"statistics (held, LOKE's) {stats}")
        checked.append((True, f"{cid}: {', '.join(wrong)}" if wrong else ""))
    contact_of = {cid: record for record, cid in portal.record_ids.items()}
    for pid, status in truth.payments.items():
        held_orders = portal.orders.get(pid)
        if not held_orders:
            checked.append((False, f"{pid}: no order"))
            continue
        (order_id, props), wrong = held_orders[-1], []
        if props.get("loke_payment_status") != status:
            wrong.append(f"loke_payment_status {props.get('loke_payment_status')} != {status}")
        if (order_id, contact_of.get(truth.payer[pid], "")) not in portal.order_contacts:
            wrong.append(f"order {order_id} not associated with its payer's contact")
        checked.append((True, f"{pid}: {', '.join(wrong)}" if wrong else ""))
    for list_id, members in expected.lists.items():
        held_members = portal.lists.get(LIST_PREFIX + loke_names[list_id], set())
        checked += [
            (cid in held_members, "" if cid in held_members else f"{list_id}: {cid} no member")
            for cid in sorted(members)
        ]
    return checked


def notes(fake: FakeHubSpot) -> dict[str, Any]:
    """What HubSpot saw, for the report's notes."""
    counts = fake.requests
    held = {
        "HubSpot requests": counts.total,
        "most in 10 s": fake.max_in_window,
    }
    held |= {f"429 {policy}": n for policy, n in sorted(counts.rate_limited.items())}
    if counts.unauthorized:
        held["401s"] = counts.unauthorized
    return held


def successes(fake: FakeHubSpot) -> int:
    """Requests HubSpot answered 2xx so far."""
    return sum(n for status, n in fake.requests.by_status.items() if 200 <= status < 300)


def _wrong_statistics(props: dict[str, str], stats: dict[str, Any] | None) -> dict[str, Any]:
    if stats is None:
        return {}
    wrong = {}
    for field, (name, kind) in STATISTICS.items():
        want, got = stats.get(field), props.get(name)
        if want is None:
            ok = got is None
        elif kind == "datetime":
            ok = _when(got) == _when(want)
        elif kind == "cents":
            ok = got is not None and round(float(got) * 100) == want
        else:
            ok = got is not None and float(got) == float(want)
        if not ok:
            wrong[name] = (got, want)
    return wrong


def _when(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None
