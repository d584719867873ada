"""The NUL character (U+0000) from outside: refused where it is read, with a reason that names
it, on both stores (PostgreSQL cannot store it; a value with one failed the statement that
wrote it, and every retry). Nothing around the refused value is held up."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.backfill import customers as backfill_pages
from app.core.config import Settings
from app.core.services import Services
from app.core.task_names import BACKFILL_PAGE
from app.ingest.apply import drain_inbox
from app.lists import runs
from app.loke.client import current_loke_client
from app.store.models import (
    BackfillRun,
    Customer,
    CustomerList,
    DeadLetter,
    ListMember,
    ListSyncRun,
    Organization,
)
from devtools.crm import FakeCrm
from tests.conftest import AUTH, RecordingDispatcher, destination, services_of
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, sign
from tests.support.list_tasks import ListTasks

ORG = "org-nul"
NOW = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
IDS = ["N1", "N2", "N3", "N4"]
NUL_REASON = "must not contain the NUL character (U+0000)"


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store  # SQLite would store a NUL: both must refuse it alike


@pytest.fixture
def client(app: Flask, loke: FakeLoke, crm: FakeCrm) -> FlaskClient:
    loke.set_customers(ORG, [*(make_customer(c, NOW) for c in IDS[:3]), with_nul("N4")])
    loke.set_list(ORG, "L1", "VIPs", IDS)
    client = app.test_client()
    body = {"destination": destination(crm), "lists": ["L1"]}
    assert client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH).status_code == 201
    return client


def with_nul(customer_id: str) -> dict[str, Any]:
    return make_customer(customer_id, NOW) | {"firstName": "Ne\x00ll"}


def count(services: Services, model: Any) -> int:
    with services.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_webhook_with_a_nul_is_dead_lettered_naming_the_field_and_the_rest_applied(
    app: Flask, client: FlaskClient, loke: FakeLoke
) -> None:
    services = services_of(app)
    secret = loke.secret_for(ORG)
    for customer in (make_customer("W1", NOW), with_nul("W2"), make_customer("W3", NOW)):
        body = json.dumps(customer_event("customer.updated", ORG, customer)).encode()
        headers = {"Content-Type": "application/json", "X-Event-Signature": sign(body, secret)}
        answer = client.post(f"/webhooks/loke/{ORG}", data=body, headers=headers)
        assert answer.status_code == 202, answer.json

    result = drain_inbox(services)

    assert (result.applied, result.failed) == (2, 1)
    with services.db.transaction() as session:
        assert set(session.scalars(select(Customer.id))) == {"W1", "W3"}
        [letter] = session.scalars(select(DeadLetter))
        assert f"customer.firstName: {NUL_REASON}" in letter.reason


def test_a_list_member_with_a_nul_is_left_out_and_the_run_finishes(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher
) -> None:
    services = services_of(app)
    tasks = ListTasks(app, dispatcher)
    [started] = runs.start_chosen(services, ORG)
    tasks.run_all()
    with services.db.transaction() as session:
        run = session.get(ListSyncRun, started.run_id)
        assert run is not None
        assert (run.status, run.members, run.adds) == ("finished", 3, 3)
        assert set(session.scalars(select(ListMember.customer_id))) == {"N1", "N2", "N3"}


def test_a_backfilled_customer_with_a_nul_is_counted_unreadable_and_the_rest_applied(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher
) -> None:
    services = services_of(app)
    [args] = [args for name, args, _, _ in dispatcher.sent if name == BACKFILL_PAGE]
    with app.app_context():
        backfill_pages.run_page(services, current_loke_client(), *args)
    with services.db.transaction() as session:
        run = session.scalars(select(BackfillRun)).one()
        # The customers are done; the payment history comes next.
        assert (run.phase, run.customers, run.invalid) == ("payments", 3, 1)
        assert set(session.scalars(select(Customer.id))) == {"N1", "N2", "N3"}


def test_loke_lists_with_odd_ids_or_names_are_shown_and_only_storable_ones_kept(
    app: Flask, client: FlaskClient, loke: FakeLoke
) -> None:
    loke.set_list(ORG, "L1", "V\x00IPs", IDS)
    loke.set_list(ORG, "L" * 65, "Too long an id", IDS)
    loke.set_list(ORG, "L\x002", "A NUL in the id", IDS)
    answer: Any = client.get(f"/api/orgs/{ORG}/lists", headers=AUTH)
    assert answer.status_code == 200, answer.json
    assert len(answer.json["lists"]) == 3
    services = services_of(app)
    with services.db.transaction() as session:
        assert {(row.id, row.name) for row in session.scalars(select(CustomerList))} == {
            ("L1", "VIPs")
        }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"name": "Caf\x00e"}, f"name: {NUL_REASON}"),
        ({"lists": ["L\x001"]}, "lists must be LOKE list ids: 1 to 64 characters, no NUL"),
    ],
)
def test_an_admin_request_with_a_nul_is_refused_and_changes_nothing(
    app: Flask, client: FlaskClient, body: dict[str, Any], reason: str
) -> None:
    answer: Any = client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH)
    assert answer.status_code == 400
    assert answer.json["error"] == {"code": "invalid_request", "message": reason}
    with services_of(app).db.transaction() as session:
        org = session.get(Organization, ORG)
        assert org is not None
        assert (org.name, org.lists) == (None, ["L1"])


@pytest.mark.parametrize("bad_id", ["id%00nul", "i" * 65])
def test_an_id_in_a_url_that_no_store_can_hold_is_not_found(
    app: Flask, client: FlaskClient, bad_id: str
) -> None:
    dest = {"destination": {"type": "http", "url": "http://127.0.0.1:9/", "secret": "s" * 16}}
    for method, url, body in [
        ("PUT", f"/api/orgs/{bad_id}", dest),
        ("GET", f"/api/orgs/{bad_id}/lists", None),
        ("GET", f"/api/orgs/{ORG}/customers/{bad_id}", None),
        ("POST", f"/webhooks/loke/{bad_id}", {"event": "customer.updated"}),
    ]:
        answer: Any = client.open(url, method=method, json=body, headers=AUTH)
        assert answer.status_code == 404, (method, url, answer.json)
        assert answer.json["error"]["code"] == "not_found"
    assert count(services_of(app), Organization) == 1
