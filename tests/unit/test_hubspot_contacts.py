"""The HubSpot destination against the fake HubSpot over real HTTP: connecting (the token
checked, the properties made once), contacts in HubSpot's formats, and the email rules
(adopt, leave out and show, never a duplicate contact). Every test runs on both stores."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import select

from app.core.config import Settings
from app.core.services import Services
from app.delivery.sender import flush_org
from app.store.models import Organization
from tests.conftest import AUTH
from tests.conftest import HUBSPOT_TOKEN as TOKEN
from tests.support.fake_hubspot import FakeHubSpot
from tests.support.fake_loke import FakeLoke
from tests.unit.test_delivery import ORG, apply, dead_letters, delivery_status, updated


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store


def hubspot_destination(hubspot: FakeHubSpot, **overrides: Any) -> dict[str, Any]:
    return {"type": "hubspot", "accessToken": TOKEN, "baseUrl": hubspot.url,
            "requestsPerTenSeconds": 1000} | overrides  # fmt: skip


def connect(client: FlaskClient, loke: FakeLoke, hubspot: FakeHubSpot, **overrides: Any) -> Any:
    loke.add_org(ORG)
    body = {"destination": hubspot_destination(hubspot, **overrides)}
    return client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH)


@pytest.fixture
def connected(client: FlaskClient, loke: FakeLoke, hubspot: FakeHubSpot) -> None:
    answer = connect(client, loke, hubspot)
    assert answer.status_code == 201, answer.json


def deliver(services: Services) -> None:
    """Flush until nothing is left, waiting out short pauses (a 423's two seconds)."""
    for _ in range(50):
        resume_in = flush_org(services, ORG, time_budget=10).resume_in
        if resume_in is None:
            return
        time.sleep(min(resume_in, 3))
    raise AssertionError("delivery did not settle")


def contact(hubspot: FakeHubSpot, customer_id: str) -> dict[str, Any]:
    found = hubspot.contact_by("loke_customer_id", customer_id)
    assert found is not None, f"no contact for {customer_id}"
    properties: dict[str, Any] = found["properties"]
    return {"id": found["id"], **properties}


def conflicts(client: FlaskClient) -> list[dict[str, Any]]:
    answer: Any = client.get(f"/api/orgs/{ORG}/conflicts", headers=AUTH)
    assert answer.status_code == 200
    found: list[dict[str, Any]] = answer.json["conflicts"]
    return found


def property_posts(hubspot: FakeHubSpot) -> int:
    routes = hubspot.requests.by_route
    return sum(n for (method, route), n in routes.items()
               if method == "POST" and route.startswith("/crm/properties/"))  # fmt: skip


# -- connecting -----------------------------------------------------------------------------------
def test_connecting_checks_the_token_and_creates_the_group_and_properties_once(
    services: Services, client: FlaskClient, loke: FakeLoke, hubspot: FakeHubSpot
) -> None:
    answer = connect(client, loke, hubspot)
    assert answer.status_code == 201, answer.json
    shown = answer.json["destination"]
    assert shown["portalId"] == hubspot.portal_id()
    assert "accessToken" not in shown
    assert TOKEN not in str(answer.json)
    with services.db.transaction() as session:
        org = session.get(Organization, ORG)
        assert org is not None
        assert TOKEN not in str(org.destination_secret_enc)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for object_type, unique in (("contacts", "loke_customer_id"), ("orders", "loke_payment_id"),
                                ("line_items", "loke_line_item_id")):  # fmt: skip
        listed = requests.get(f"{hubspot.url}/crm/properties/2026-03/{object_type}",
                              headers=headers, timeout=5).json()["results"]  # fmt: skip
        ours = {p["name"]: p for p in listed if p.get("groupName") == "loke"}
        assert ours[unique]["hasUniqueValue"] is True
    contacts = requests.get(f"{hubspot.url}/crm/properties/2026-03/contacts", headers=headers,
                            timeout=5).json()["results"]  # fmt: skip
    assert {"loke_total_spend", "loke_marketing_opt_in", "loke_dob"} <= {
        p["name"] for p in contacts
    }
    made = property_posts(hubspot)
    again = client.put(f"/api/orgs/{ORG}", json={"destination": hubspot_destination(hubspot)},
                       headers=AUTH)  # fmt: skip
    assert again.status_code == 200, again.json
    assert property_posts(hubspot) == made  # nothing made twice


def test_a_rejected_token_is_refused_with_hubspots_reason_and_nothing_is_stored(
    client: FlaskClient, loke: FakeLoke, hubspot: FakeHubSpot
) -> None:
    hubspot.revoke(TOKEN)
    answer = connect(client, loke, hubspot)
    assert answer.status_code == 400
    assert "rejected the access token" in answer.json["error"]["message"]
    assert "Authentication credentials not found" in answer.json["error"]["message"]
    assert client.get(f"/api/orgs/{ORG}", headers=AUTH).status_code == 404


def test_an_unreachable_hubspot_fails_the_connect_with_503_and_stores_nothing(
    client: FlaskClient, loke: FakeLoke, hubspot: FakeHubSpot
) -> None:
    hubspot.fail_next(10, status=502)
    answer = connect(client, loke, hubspot)
    assert answer.status_code == 503
    assert client.get(f"/api/orgs/{ORG}", headers=AUTH).status_code == 404


# -- contacts -------------------------------------------------------------------------------------
def test_contacts_carry_lokes_values_in_hubspots_formats(
    services: Services, connected: None, hubspot: FakeHubSpot
) -> None:
    stats = {"pointsBalance": 50, "totalPointsEarned": 70, "totalPointsRedeemed": 20,
             "totalSpend": 1234, "lastSpentAt": "2026-05-04T07:30:00+10:00"}  # fmt: skip
    apply(services, updated("C1", 1, statistics=stats, gender=None))
    deliver(services)
    c1 = contact(hubspot, "C1")
    assert c1["email"] == "c1@example.com"
    assert c1["firstname"] == "Test"
    assert c1["lastname"] == "Customer C1"
    assert c1["phone"].startswith("+614")
    assert c1["loke_dob"] == "1990-01-31"
    assert c1["loke_marketing_opt_in"] == "true"
    assert c1["loke_total_spend"] == "12.34"
    assert (c1["loke_points_balance"], c1["loke_total_points_earned"]) == ("50", "70")
    assert c1["loke_last_spent_at"] == "2026-05-03T21:30:00.000Z"
    assert c1["loke_updated_at"] == "2026-05-04T08:01:00.000Z"
    assert not c1.get("loke_gender")  # null clears


def test_a_batch_never_names_one_email_twice_and_holds_at_most_100_contacts(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    events = [updated(f"C{n:03}", 1) for n in range(150)]
    events[7] = updated("C007", 1, email="Shared@Example.com")
    events[8] = updated("C008", 1, email="shared@example.com")
    apply(services, *events)
    deliver(services)
    assert len(hubspot.contacts()) == 150
    assert hubspot.requests.by_status[400] == 0  # no "Duplicate IDs", no batch over 100
    assert contact(hubspot, "C007")["email"] == "Shared@Example.com"
    assert not contact(hubspot, "C008").get("email")
    [conflict] = conflicts(client)
    assert conflict["customerId"] == "C008"
    assert "C007" in conflict["reason"]
    assert delivery_status(client)["conflicts"] == 1
    assert dead_letters(client) == []


def test_a_contact_hubspot_had_with_the_email_and_no_loke_id_is_adopted(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    seeded = hubspot.seed_contact({"email": "c1@example.com", "firstname": "Known"})
    apply(services, updated("C1", 1))
    deliver(services)
    [only] = hubspot.contacts()
    assert only["id"] == seeded
    assert only["properties"]["loke_customer_id"] == "C1"
    assert only["properties"]["firstname"] == "Test"
    assert conflicts(client) == []


def two_customers_one_email(services: Services) -> None:
    """C1 delivered with an email, then C2 with the same one (in a later batch)."""
    apply(services, updated("C1", 1, email="pat@example.com"))
    deliver(services)
    apply(services, updated("C2", 1, email="pat@example.com"))
    deliver(services)


def test_an_email_of_another_loke_customer_is_left_out_shown_and_cleared_once_unique(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    two_customers_one_email(services)
    assert len(hubspot.contacts()) == 2
    assert not contact(hubspot, "C2").get("email")
    [conflict] = conflicts(client)
    assert conflict["customerId"] == "C2"
    assert conflict["existingRecordId"] == contact(hubspot, "C1")["id"]
    apply(services, updated("C2", 2, email="sam@example.com"))
    deliver(services)
    assert contact(hubspot, "C2")["email"] == "sam@example.com"
    assert conflicts(client) == []


def test_an_email_hubspot_calls_invalid_is_left_out_and_shown(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    apply(services, updated("C1", 1, email="not an email"), updated("C2", 1))
    deliver(services)
    assert not contact(hubspot, "C1").get("email")
    assert contact(hubspot, "C2")["email"] == "c2@example.com"
    [conflict] = conflicts(client)
    assert conflict["customerId"] == "C1"
    assert "invalid" in conflict["reason"]
    assert dead_letters(client) == []


def test_a_record_hubspot_refuses_is_a_dead_letter_of_its_own_with_hubspots_message(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    hubspot.add_rule("contacts", "phone", r"\+614\d{8}")  # the portal's own rule
    apply(services, updated("C1", 1, phoneNumber="+15550100"), updated("C2", 1))
    deliver(services)
    assert hubspot.contact_by("loke_customer_id", "C1") is None
    assert contact(hubspot, "C2")["email"] == "c2@example.com"
    [letter] = dead_letters(client)
    assert letter["kind"] == "operation"
    assert "VALIDATION_ERROR" in letter["reason"]
    assert "INVALID_FORMAT" in letter["reason"]


def test_the_conflicts_metric_counts_each_organizations_open_conflicts(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    apply(services, updated("C1", 1, email="bad"))
    deliver(services)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'loke_sync_delivery_conflicts_open{{destination="{ORG}"}} 1.0' in metrics


def test_purging_an_organization_forgets_what_hubspot_told_us(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    from app.store.models import CrmContact, DeliveryConflict

    apply(services, updated("C1", 1, email="bad"), updated("C2", 1))
    deliver(services)
    assert client.delete(f"/api/orgs/{ORG}?purge=true", headers=AUTH).status_code in (200, 204)
    with services.db.transaction() as session:
        assert session.scalars(select(CrmContact)).all() == []
        assert session.scalars(select(DeliveryConflict)).all() == []


def test_conflicts_are_sent_again_on_request_once_fixed_in_hubspot(
    services: Services, client: FlaskClient, connected: None, hubspot: FakeHubSpot
) -> None:
    two_customers_one_email(services)
    assert len(conflicts(client)) == 1
    # In HubSpot, someone gives C1's contact another email: C2's is free now.
    moved = {"id": contact(hubspot, "C1")["id"], "properties": {"email": "pat.work@example.com"}}
    fixed = requests.post(f"{hubspot.url}/crm/objects/2026-03/contacts/batch/update", timeout=5,
                          headers={"Authorization": f"Bearer {TOKEN}"},
                          json={"inputs": [moved]})  # fmt: skip
    assert fixed.status_code == 200, fixed.text
    answer: Any = client.post(f"/api/orgs/{ORG}/conflicts/retry", headers=AUTH)
    assert answer.status_code == 202
    assert answer.json == {"retried": 1}
    deliver(services)
    assert contact(hubspot, "C2")["email"] == "pat@example.com"
    assert conflicts(client) == []
