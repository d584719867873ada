"""The simulated organization: deterministic with a seed, LOKE-consistent as it changes, and
the demo CRM's fidelity view telling matching customers from differing ones."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from app.delivery.destinations.base import Batch, DestinationContext
from app.delivery.destinations.http import HttpConfig, HttpDestination
from devtools.demo.crm import DemoCrm
from devtools.sandbox.firer import IMMEDIATE
from devtools.sandbox.payloads import STATISTICS_TIMES, parse_ts
from devtools.sandbox.seeding import seed_org
from devtools.sandbox.server import LokeSandbox
from devtools.sandbox.simulation import Simulator

pytestmark = pytest.mark.timeout(60)

ORG = "org-sim"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def run(seed: int, steps: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Seed and simulate with a clock that advances 10 ms a reading: (customers, bodies)."""
    ticks = iter(range(10**6))
    sandbox = LokeSandbox("id", "secret")
    rng = random.Random(seed)
    seed_org(sandbox, ORG, "Sim", 50, [("A", 10)], rng)
    simulator = Simulator(
        sandbox, ORG, rng, clock=lambda: T0 + timedelta(milliseconds=10 * next(ticks))
    )
    bodies = [body for _ in range(steps) for body in simulator.step()]
    return sandbox.snapshot(ORG).customers, bodies


def test_the_same_seed_replays_the_same_organization_and_webhooks() -> None:
    first, again, other = run(7, 300), run(7, 300), run(8, 300)
    assert json.dumps(first) == json.dumps(again)
    assert first[0] != other[0]
    assert first[1] != other[1]
    kinds = {body["event"] for body in first[1]}
    assert kinds == {"customer.created", "customer.updated", "customer.updated-statistics",
                     "payment.completed", "payment.refunded"}  # fmt: skip


def test_each_customers_timestamps_only_move_forward_and_the_last_event_is_the_truth() -> None:
    customers, bodies = run(11, 400)
    profile: dict[str, str] = {}
    activity: dict[str, datetime] = {}
    for body in bodies:
        if body["event"] in ("customer.created", "customer.updated"):
            customer = body["customer"]
            assert parse_ts(customer["updatedAt"]) > parse_ts(profile.get(customer["id"]))
            profile[customer["id"]] = customer["updatedAt"]
        if body["event"] == "customer.updated-statistics":
            latest = max(parse_ts(body["statistics"][k]) for k in STATISTICS_TIMES)
            cid = body["customer"]["id"]
            assert cid not in activity or latest > activity[cid]
            activity[cid] = latest
            assert customers[cid]["statistics"]["lastPointsEarnedAt"] is not None
    for cid, updated in profile.items():
        assert customers[cid]["updatedAt"] == updated
    last_stats = {b["customer"]["id"]: b["statistics"] for b in bodies
                  if b["event"] == "customer.updated-statistics"}  # fmt: skip
    for cid, stats in last_stats.items():
        assert customers[cid]["statistics"] == stats


def test_list_churn_moves_people_in_and_out_without_webhooks() -> None:
    with LokeSandbox("id", "secret", style=IMMEDIATE) as sandbox:
        rng = random.Random(3)
        lists = seed_org(sandbox, ORG, "Sim", 200, [("A", 50)], rng)
        before = sandbox.snapshot(ORG).lists[lists["A"]][1]
        simulator = Simulator(sandbox, ORG, rng, list_ids=[lists["A"]])
        simulator.churn_lists(fraction=0.1)
        after = sandbox.snapshot(ORG).lists[lists["A"]][1]
        assert len(after) == len(before) == 50
        assert len(before - after) == len(after - before) == 5
        assert sandbox.firer.stats()["fired"] == 0


def contact_op(customer: dict[str, Any]) -> dict[str, Any]:
    contact = {k: v for k, v in customer.items() if k not in ("id", "statistics")}
    return {"type": "contact.upsert", "customerId": customer["id"], "contact": contact,
            "statistics": customer["statistics"]}  # fmt: skip


def test_the_demo_crm_verifies_batches_and_reports_what_matches_loke() -> None:
    with LokeSandbox("id", "secret") as sandbox:
        lists = seed_org(sandbox, ORG, "Sim", 5, [("A", 2)], random.Random(1))
        truth = sandbox.snapshot(ORG)
        customers = list(truth.customers.values())
        members = sorted(truth.lists[lists["A"]][1])
        with (
            DemoCrm("crm-secret-123", sandbox.snapshot, ORG, [lists["A"]]) as crm,
            requests.Session() as http,
        ):
            config = HttpConfig(type="http", url=crm.batch_url)
            send = HttpDestination(
                config, "crm-secret-123", DestinationContext(ORG, 5.0, http)
            ).send
            edited = dict(customers[1], firstName="Not the truth")
            ops = [contact_op(c) for c in (customers[0], edited, customers[2], customers[3])]
            ops.append(
                {
                    "type": "list.add",
                    "listId": lists["A"],
                    "listName": "A",
                    "customerId": members[0],
                }
            )
            send(Batch(str(uuid.uuid4()), ORG, ops), 5.0)
            report = requests.get(f"{crm.url}/demo/crm/fidelity.json", timeout=5).json()
            assert report["customers"] == {
                "loke": 5, "crm": 4, "matching": 3, "differing": 1, "missing": 1, "extra": 0,
            }  # fmt: skip
            assert {
                "record": "customer",
                "id": customers[1]["id"],
                "problem": "differs",
                "fields": ["firstName"],
            } in report["differences"]["items"]
            assert report["lists"][0] | {"name": None} == {
                "id": lists["A"], "name": None, "loke": 2, "crm": 1, "matching": 1, "missing": 1,
                "extra": 0, "matches": False,
            }  # fmt: skip
            assert report["matches"] is False

            fixed = [contact_op(customers[1]), contact_op(customers[4])]
            fixed.append(
                {
                    "type": "list.add",
                    "listId": lists["A"],
                    "listName": "A",
                    "customerId": members[1],
                }
            )
            send(Batch(str(uuid.uuid4()), ORG, fixed), 5.0)
            report = requests.get(f"{crm.url}/demo/crm/fidelity.json", timeout=5).json()
            assert report["matches"] is True
            assert report["listsMatch"] is True
            assert report["customers"]["matching"] == 5

            forged = requests.post(
                crm.batch_url, data=b"{}", headers={"X-Signature": "sha256=00"}, timeout=5
            )
            assert forged.status_code == 401
            page = requests.get(f"{crm.url}/demo/crm", timeout=5)
            assert page.status_code == 200
            assert "CRM matches LOKE" in page.text
            assert "5 of 5 customers match" in page.text
