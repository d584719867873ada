"""Payments as HubSpot orders with line items and associations (a refund final), and opted-in
lists as MANUAL lists with their members, against the fake HubSpot. Both stores."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app.core.config import Settings
from app.core.services import Services
from app.delivery.sender import flush_org
from app.lists import runs
from tests.conftest import AUTH, HUBSPOT_TOKEN, services_of
from tests.support.fake_hubspot import FakeHubSpot
from tests.support.fake_loke import FakeLoke, make_customer, make_payment, payment_event
from tests.support.list_tasks import ListTasks
from tests.unit.test_delivery import NOW, ORG, apply, dead_letters, outbox_entries, updated
from tests.unit.test_hubspot_contacts import contact, deliver, hubspot_destination

IDS = [f"M{n:03d}" for n in range(8)]


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store


@pytest.fixture
def client(app: Flask, loke: FakeLoke, hubspot: FakeHubSpot) -> FlaskClient:
    loke.add_org(ORG)
    loke.set_customers(ORG, [make_customer(cid, NOW) for cid in IDS])
    loke.set_list(ORG, "L1", "VIPs", IDS[:5])
    loke.set_list(ORG, "L2", "Lunch club", IDS[4:])
    client = app.test_client()
    body = {"destination": hubspot_destination(hubspot), "lists": ["L1", "L2"]}
    answer = client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH)
    assert answer.status_code == 201, answer.json
    return client


def resync(app: Flask) -> None:
    services = services_of(app)
    tasks = ListTasks.from_now(app)
    runs.start_chosen(services, ORG)
    tasks.run_all()


def members(hubspot: FakeHubSpot, name: str) -> set[str]:
    """The LOKE ids of a HubSpot list's members."""
    by_id = {c["id"]: c["properties"].get("loke_customer_id") for c in hubspot.contacts()}
    return {by_id[record] for record in hubspot.members(hubspot.lists()[name])}


def order(hubspot: FakeHubSpot, payment_id: str) -> dict[str, Any]:
    [found] = [o for o in hubspot.orders() if o["properties"]["loke_payment_id"] == payment_id]
    return found


# -- payments -------------------------------------------------------------------------------------
def test_a_payment_is_an_order_with_line_items_associated_and_a_refund_is_final(
    services: Services, client: FlaskClient, hubspot: FakeHubSpot
) -> None:
    customer = make_customer("C1", NOW)
    items = [{"id": "i1", "name": "Flat white", "amount": 450, "quantity": 2, "type": "product",
              "options": []},
             {"id": "i2", "name": "Banana bread", "amount": 600, "quantity": 1,
              "type": "product", "options": []}]  # fmt: skip
    completed = make_payment("P1", customer, NOW, total=1500, items=items)
    apply(services, updated("C1", 1), payment_event("completed", ORG, completed))
    deliver(services)
    placed = order(hubspot, "P1")
    assert placed["properties"]["hs_total_price"] == "15.00"
    assert placed["properties"]["hs_currency_code"] == "AUD"
    assert placed["properties"]["loke_payment_status"] == "completed"
    assert placed["properties"]["hs_external_created_date"] == "2026-05-04T08:00:00.000Z"
    assert placed["properties"]["hs_order_name"] == "LOKE payment"
    assert not placed["properties"].get("hs_refund_amount")
    assert hubspot.associations("orders", "contacts") == {
        (placed["id"], contact(hubspot, "C1")["id"])
    }
    lines = {li["id"]: li["properties"] for li in hubspot.line_items()}
    assert sorted((p["name"], p["quantity"], p["price"]) for p in lines.values()) == [
        ("Banana bread", "1", "6.00"), ("Flat white", "2", "4.50")]  # fmt: skip
    assert hubspot.associations("orders", "line_items") == {(placed["id"], i) for i in lines}

    refunded = completed | {"refundedAt": "2026-05-04T09:00:00Z", "state": "refunded"}
    apply(services, payment_event("refunded", ORG, refunded))
    deliver(services)
    apply(services, payment_event("completed", ORG, completed | {"refId": "late"}))
    deliver(services)
    [only] = hubspot.orders()
    assert only["id"] == placed["id"]
    assert only["properties"]["loke_payment_status"] == "refunded"
    assert only["properties"]["loke_refunded_at"] == "2026-05-04T09:00:00.000Z"
    assert only["properties"]["hs_refund_amount"] == "15.00"
    assert len(hubspot.line_items()) == 2  # sent again, never added twice
    assert dead_letters(client) == []


def test_a_payment_whose_contact_hubspot_refused_waits_and_is_not_an_orphan_order(
    services: Services, client: FlaskClient, hubspot: FakeHubSpot
) -> None:
    hubspot.add_rule("contacts", "phone", r"\+614\d{8}")
    customer = make_customer("C9", NOW, phoneNumber="+15550100")
    apply(services, payment_event("completed", ORG, make_payment("P9", customer, NOW)))
    flush_org(services, ORG, time_budget=5)
    assert hubspot.orders() == []
    [letter] = dead_letters(client)
    assert letter["detail"]["operations"][0]["type"] == "contact.upsert"
    [waiting] = [e for e in outbox_entries(services) if e.kind == "payment"]
    assert waiting.pending
    assert waiting.attempts == 1
    assert "contact is not in HubSpot" in (waiting.last_error or "")


# -- lists ----------------------------------------------------------------------------------------
def test_lists_are_manual_lists_named_with_the_prefix_that_follow_lokes_members(
    app: Flask, services: Services, client: FlaskClient, loke: FakeLoke, hubspot: FakeHubSpot
) -> None:
    resync(app)
    deliver(services)
    assert set(hubspot.lists()) == {"LOKE: VIPs", "LOKE: Lunch club"}
    assert members(hubspot, "LOKE: VIPs") == set(IDS[:5])
    assert members(hubspot, "LOKE: Lunch club") == set(IDS[4:])
    loke.set_list(ORG, "L1", "VIPs", IDS[2:6])
    resync(app)
    deliver(services)
    assert members(hubspot, "LOKE: VIPs") == set(IDS[2:6])
    assert dead_letters(client) == []


def test_a_list_hubspot_has_by_that_name_is_adopted_and_a_renamed_one_renamed(
    app: Flask, services: Services, client: FlaskClient, loke: FakeLoke, hubspot: FakeHubSpot
) -> None:
    made = requests.post(f"{hubspot.url}/crm/v3/lists", timeout=5,
                         headers={"Authorization": f"Bearer {HUBSPOT_TOKEN}"},
                         json={"name": "LOKE: VIPs", "objectTypeId": "0-1",
                               "processingType": "MANUAL"}).json()["list"]["listId"]  # fmt: skip
    resync(app)
    deliver(services)
    assert hubspot.lists()["LOKE: VIPs"] == made
    loke.set_list(ORG, "L1", "Very important", IDS[:5] + IDS[6:7])
    resync(app)
    deliver(services)
    assert hubspot.lists().get("LOKE: Very important") == made
    assert "LOKE: VIPs" not in hubspot.lists()
    assert members(hubspot, "LOKE: Very important") == set(IDS[:5] + IDS[6:7])


def test_a_merged_contacts_new_id_is_picked_up_for_memberships(
    app: Flask, services: Services, client: FlaskClient, loke: FakeLoke, hubspot: FakeHubSpot
) -> None:
    resync(app)
    deliver(services)
    old = contact(hubspot, "M000")["id"]
    stray = hubspot.seed_contact({"firstname": "Same person"})
    merged = hubspot.merge(old, stray)
    assert merged != old
    loke.set_list(ORG, "L1", "VIPs", IDS[:5])
    loke.set_list(ORG, "L2", "Lunch club", IDS[4:] + IDS[:1])  # M000 joins: by its new id
    resync(app)
    deliver(services)
    assert merged in hubspot.members(hubspot.lists()["LOKE: Lunch club"])
    assert members(hubspot, "LOKE: Lunch club") == set(IDS[4:] + IDS[:1])
    assert dead_letters(client) == []


def test_removing_a_member_hubspot_never_had_is_not_an_error(
    app: Flask, services: Services, client: FlaskClient, loke: FakeLoke, hubspot: FakeHubSpot
) -> None:
    resync(app)
    deliver(services)
    loke.set_list(ORG, "L2", "Lunch club", [])
    resync(app)
    deliver(services)
    assert members(hubspot, "LOKE: Lunch club") == set()
    assert dead_letters(client) == []
