"""The dashboard's customer search, on both stores: by LOKE id across organizations or within one,
by email (exact in any case, or a prefix taken literally), nothing found said so; and a
customer's page: stored state, pending changes, delivered ones, the CRM's record id, the dead
letters that name it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.core.config import Settings
from app.core.services import Services
from app.delivery.sender import flush_org
from app.ingest.apply import drain_inbox
from app.store.models import CrmContact
from devtools.crm import FakeCrm
from tests.conftest import AUTH, destination
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, sign
from tests.unit.test_dashboard import csrf_of, page, sign_in

ORG, OTHER = "org-find", "org-other"
NOW = dt.datetime(2026, 9, 1, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store  # emails are read from JSON, written per dialect


@pytest.fixture
def secrets(client: FlaskClient, loke: FakeLoke, crm: FakeCrm) -> dict[str, str]:
    """ORG and OTHER connected through the admin API, the client signed in; their webhook
    secrets by organization."""
    found = {}
    for org in (ORG, OTHER):
        loke.add_org(org, f"Cafe {org}")
        put = client.put(f"/api/orgs/{org}", json={"destination": destination(crm)}, headers=AUTH)
        assert put.status_code == 201
        found[org] = loke.secret_for(org)
    assert sign_in(client).status_code == 303
    return found


def store(
    client: FlaskClient, services: Services, secret: str, org: str, customer_id: str, **fields: Any
) -> None:
    """A customer.created webhook, received and applied as LOKE would have it."""
    body = customer_event("customer.created", org, make_customer(customer_id, NOW, **fields))
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Event-Signature": sign(raw, secret)}
    assert client.post(f"/webhooks/loke/{org}", data=raw, headers=headers).status_code == 202
    drain_inbox(services)


def found_on(shown: str) -> set[str]:
    """The customer pages a result list links to."""
    return {
        part.split('"', 1)[0]
        for part in shown.split('href="/orgs/')[1:]
        if "/customers/" in part.split('"', 1)[0]
    }


def test_an_id_opens_the_customer_page_with_its_stored_state_and_pending_change(
    client: FlaskClient, services: Services, secrets: dict[str, str]
) -> None:
    store(client, services, secrets[ORG], ORG, "C1", firstName="Ann", email="ann@example.com")
    answer = client.get("/search?q=C1")
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/orgs/{ORG}/customers/C1"
    shown = page(client, answer.headers["Location"])
    assert "ann@example.com" in shown
    assert "Ann Customer" in shown
    pending = shown.split('id="pending"')[1].split("</section>")[0]
    assert "<code>C1</code>" in pending
    assert "contact" in pending
    assert "Nothing delivered yet." in shown


def test_a_delivered_customer_shows_its_last_delivery_and_its_crm_record(
    client: FlaskClient, services: Services, secrets: dict[str, str], crm: FakeCrm
) -> None:
    store(client, services, secrets[ORG], ORG, "C1")
    flush_org(services, ORG)
    assert (ORG, "C1") in crm.contacts
    with services.db.transaction() as session:
        session.add(CrmContact(org_id=ORG, customer_id="C1", record_id="90210", updated_at=NOW))
    shown = page(client, f"/orgs/{ORG}/customers/C1")
    assert "Nothing waits" in shown
    delivered = shown.split('id="deliveries"')[1].split("</section>")[0]
    assert "delivered" in delivered
    assert "<code>C1</code>" in delivered
    assert "<code>90210</code>" in shown
    stored = client.get(f"/api/orgs/{ORG}/customers/C1", headers=AUTH).json
    assert stored is not None
    assert stored["crmRecordId"] == "90210"
    assert stored["delivery"][0] | {"changedAt": None} == {
        "kind": "contact", "key": "C1", "pending": False, "attempts": 0, "inFlight": False,
        "lastError": None, "seq": 1, "changedAt": None, "nextAttemptAt": None,
    }  # fmt: skip


def test_the_same_id_in_two_organizations_is_listed_and_the_org_filter_narrows_it(
    client: FlaskClient, services: Services, secrets: dict[str, str]
) -> None:
    for org in (ORG, OTHER):
        store(client, services, secrets[org], org, "C9")
    shown = page(client, "/search?q=C9")
    assert found_on(shown) == {f"{ORG}/customers/C9", f"{OTHER}/customers/C9"}
    answer = client.get(f"/search?q=C9&org={OTHER}")
    assert answer.headers["Location"] == f"/orgs/{OTHER}/customers/C9"


def test_an_email_is_found_exactly_in_any_case_and_by_a_literal_prefix(
    client: FlaskClient, services: Services, secrets: dict[str, str]
) -> None:
    store(client, services, secrets[ORG], ORG, "C1", email="Ann.Lee@Example.com")
    store(client, services, secrets[ORG], ORG, "C2", email="ann.lee@example.com.au")
    store(client, services, secrets[OTHER], OTHER, "C3", email="annabel@example.com")
    store(client, services, secrets[ORG], ORG, "C4", email="a_nn@example.com")
    answer = client.get("/search?q=+ANN.LEE@example.COM+")
    assert answer.headers["Location"] == f"/orgs/{ORG}/customers/C1"
    shown = page(client, "/search?q=ann.&prefix=1")
    assert found_on(shown) == {f"{ORG}/customers/C1", f"{ORG}/customers/C2"}
    shown = page(client, "/search?q=Ann&prefix=1")
    assert found_on(shown) == {f"{ORG}/customers/{c}" for c in ("C1", "C2")} | {
        f"{OTHER}/customers/C3"
    }
    only = client.get(f"/search?q=Ann&prefix=1&org={OTHER}")
    assert only.headers["Location"] == f"/orgs/{OTHER}/customers/C3"
    # LIKE's wildcards are letters like any other here.
    assert client.get("/search?q=a_n&prefix=1").headers["Location"] == f"/orgs/{ORG}/customers/C4"
    assert "No customer matches" in page(client, "/search?q=%25%25&prefix=1")
    # An email's exact search never matches a mere prefix.
    assert "No customer matches" in page(client, "/search?q=ann.lee@example")


def test_the_customer_page_lists_the_dead_letters_that_name_it_and_no_others(
    client: FlaskClient, services: Services, secrets: dict[str, str], crm: FakeCrm
) -> None:
    crm.refuse_records({"C1"}, reason="invalid email")
    for customer in ("C1", "C2", "C10"):
        store(client, services, secrets[ORG], ORG, customer)
    flush_org(services, ORG)
    # An update of C2 that cannot be applied: a dead letter of the event, naming C2.
    store(client, services, secrets[ORG], ORG, "C2", updatedAt="not a time")
    letters = client.get("/api/dead-letters", headers=AUTH).json["deadLetters"]  # type: ignore[index]
    by_kind = {letter["kind"]: letter["id"] for letter in letters}
    assert set(by_kind) == {"operation", "event"}

    def named_on(customer: str) -> set[int]:
        shown = page(client, f"/orgs/{ORG}/customers/{customer}")
        part = shown.split('id="customer-dead-letters"')[1].split("</section>")[0]
        return {letter["id"] for letter in letters if f'id="dead-letter-{letter["id"]}"' in part}

    assert named_on("C1") == {by_kind["operation"]}
    assert named_on("C2") == {by_kind["event"]}
    assert named_on("C10") == set()  # "C1" is a part of its id, not its id


@pytest.mark.parametrize(
    "query", ["nobody", "nobody@example.com", "x" * 65, "a\x00b", "a" * 400 + "@example.com"]
)
def test_nothing_found_says_so(
    client: FlaskClient, services: Services, secrets: dict[str, str], query: str
) -> None:
    store(client, services, secrets[ORG], ORG, "C1")
    answer = client.get("/search", query_string={"q": query})
    assert answer.status_code == 200
    assert "No customer matches" in answer.get_data(as_text=True)
    assert client.get(f"/orgs/{ORG}/customers/nobody").status_code == 404


def test_the_search_box_is_on_every_page_and_behind_the_session(
    client: FlaskClient, secrets: dict[str, str]
) -> None:
    assert 'action="/search"' in page(client, "/")
    assert 'action="/search"' in page(client, "/dead-letters")
    client.post("/signout", data={"csrf": csrf_of(client, "/")})
    assert client.get("/search?q=C1").headers["Location"].startswith("/signin")
