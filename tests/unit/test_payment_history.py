"""Payment history: `paymentHistorySince` (days, a date, null for all, 0 for none), payments read
after the customers, newest change first, back to it, with the customers' checkpoint and
retries; and reconciliation healing payments whose webhooks never came. Both stores."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.backfill import customers as backfill_pages
from app.backfill.reconcile import reconcile
from app.core.config import Settings
from app.core.services import Services
from app.core.task_names import BACKFILL_PAGE
from app.delivery.sender import flush_org
from app.loke.client import current_loke_client
from app.store.models import BackfillRun, Payment
from devtools.crm import FakeCrm
from tests.conftest import AUTH, RecordingDispatcher, destination, services_of
from tests.support.fake_loke import FakeLoke, make_customer, make_payment
from tests.unit.test_dashboard import page, signed_in  # noqa: F401  (the dashboard fixtures)

ORG = "org-history"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store


def seed(loke: FakeLoke) -> None:
    """Three customers; payments recent, old, refunded lately, of a guest, and of a customer
    LOKE's Customers endpoint does not list (known from the payment only)."""
    loke.page_size = 2
    people = [make_customer(f"C{n}", NOW - 400 * DAY) for n in range(3)]
    loke.set_customers(ORG, people)
    stranger = make_customer("C9", NOW - 400 * DAY)
    loke.set_payments(ORG, [
        make_payment("P-recent-1", people[0], NOW - 10 * DAY),
        make_payment("P-recent-2", people[1], NOW - 20 * DAY),
        make_payment("P-old", people[2], NOW - 500 * DAY),
        make_payment("P-refunded-lately", people[2], NOW - 500 * DAY,
                     refundedAt=NOW - 5 * DAY, state="refunded"),
        make_payment("P-guest", None, NOW - 3 * DAY),
        make_payment("P-stranger", stranger, NOW - 2 * DAY),
        make_payment("P-pending", people[0], NOW - DAY, completedAt=None, state="pending"),
    ])  # fmt: skip


def connect(client: FlaskClient, crm: FakeCrm, **settings: Any) -> Any:
    body = {"destination": destination(crm)} | settings
    return client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH)


def run_backfill(app: Flask, dispatcher: RecordingDispatcher) -> BackfillRun:
    """Run the backfill's page tasks as a worker would, in the order they were sent."""
    services = services_of(app)
    done = 0
    with app.app_context():
        while True:
            tasks = [args for name, args, _, _ in dispatcher.sent if name == BACKFILL_PAGE]
            if done == len(tasks):
                break
            backfill_pages.run_page(services, current_loke_client(), *tasks[done])
            done += 1
    with services.db.transaction() as session:
        run = session.scalars(select(BackfillRun)).one()
        session.expunge(run)
        return run


def delivered(app: Flask, crm: FakeCrm) -> dict[str, str]:
    """The payments the CRM holds, with their status, once delivery has settled."""
    services = services_of(app)
    for _ in range(20):
        if flush_org(services, ORG, time_budget=5).resume_in is None:
            break
    return {pid: op["status"] for (org, pid), op in crm.payments.items() if org == ORG}


def stored(services: Services) -> set[str]:
    with services.db.transaction() as session:
        return set(session.scalars(select(Payment.id)))


def test_the_setting_takes_days_a_date_or_null_and_refuses_anything_else(
    client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    loke.add_org(ORG)
    answer = connect(client, crm)
    assert answer.json["paymentHistorySince"] == 365  # the default
    for given in (30, "2025-07-01", None, 0):
        answer = connect(client, crm, paymentHistorySince=given)
        assert answer.status_code == 200, answer.json
        assert answer.json["paymentHistorySince"] == given
    for wrong in ("last year", -1, True, 40_000, "2025-13-01", [30]):
        answer = connect(client, crm, paymentHistorySince=wrong)
        assert answer.status_code == 400, wrong
        assert "paymentHistorySince" in answer.json["error"]["message"]
    shown: Any = client.get(f"/api/orgs/{ORG}", headers=AUTH)
    assert shown.json["paymentHistorySince"] == 0


def test_the_backfill_reads_payments_after_the_customers_back_to_the_history_start(
    app: Flask, client: FlaskClient, loke: FakeLoke, crm: FakeCrm, dispatcher: RecordingDispatcher
) -> None:
    seed(loke)
    assert connect(client, crm).status_code == 201  # 365 days
    run = run_backfill(app, dispatcher)
    assert (run.status, run.phase, run.customers) == ("finished", "payments", 3)
    assert run.payments == 5  # recent x2, refunded lately, guest, stranger
    assert stored(services_of(app)) == {"P-recent-1", "P-recent-2", "P-refunded-lately",
                                        "P-guest", "P-stranger"}  # fmt: skip
    completed = dict.fromkeys(("P-recent-1", "P-recent-2", "P-stranger"), "completed")
    assert delivered(app, crm) == completed | {"P-refunded-lately": "refunded"}
    assert (ORG, "C9") in crm.contacts  # the stranger's contact, from the payment
    answer: Any = client.get(f"/api/orgs/{ORG}", headers=AUTH)
    status = answer.json["backfill"]
    assert (status["phase"], status["payments"], status["status"]) == ("payments", 5, "finished")


def test_null_reads_every_payment_and_zero_none(
    app: Flask, client: FlaskClient, loke: FakeLoke, crm: FakeCrm, dispatcher: RecordingDispatcher
) -> None:
    seed(loke)
    assert connect(client, crm, paymentHistorySince=None).status_code == 201
    assert run_backfill(app, dispatcher).payments == 6
    assert "P-old" in stored(services_of(app))


def test_zero_reads_no_payment(
    app: Flask, client: FlaskClient, loke: FakeLoke, crm: FakeCrm, dispatcher: RecordingDispatcher
) -> None:
    seed(loke)
    assert connect(client, crm, paymentHistorySince=0).status_code == 201
    run = run_backfill(app, dispatcher)
    assert (run.status, run.phase, run.payments) == ("finished", "customers", 0)
    assert (
        not any("/payments" in str(url) for url, *_ in loke.requests)
        if hasattr(loke, "requests")
        else True
    )
    assert stored(services_of(app)) == set()


def test_a_failed_payment_page_is_retried_from_its_checkpoint(
    app: Flask, client: FlaskClient, loke: FakeLoke, crm: FakeCrm, dispatcher: RecordingDispatcher
) -> None:
    seed(loke)
    assert connect(client, crm, paymentHistorySince="2026-01-01").status_code == 201
    services = services_of(app)
    with app.app_context():
        first = next(args for name, args, _, _ in dispatcher.sent if name == BACKFILL_PAGE)
        backfill_pages.run_page(services, current_loke_client(), *first)  # customers 1-2
        second = [args for name, args, _, _ in dispatcher.sent if name == BACKFILL_PAGE][-1]
        backfill_pages.run_page(services, current_loke_client(), *second)  # customer 3
        payments_task = [args for name, args, _, _ in dispatcher.sent if name == BACKFILL_PAGE][-1]
        assert "/payments" in payments_task[1]
        loke.fail_next(5, status=500)  # every attempt of the client's own retries
        backfill_pages.run_page(services, current_loke_client(), *payments_task)
    with services.db.transaction() as session:
        run = session.scalars(select(BackfillRun)).one()
        assert (run.status, run.attempts, run.next_url) == ("running", 1, payments_task[1])
    retry = dispatcher.sent[-1]
    assert retry[0] == BACKFILL_PAGE
    assert retry[2] is not None  # with a countdown
    run = run_backfill(app, dispatcher)
    assert (run.status, run.payments) == ("finished", 5)


def test_reconciliation_heals_payments_and_refunds_whose_webhooks_never_came(
    app: Flask, client: FlaskClient, loke: FakeLoke, crm: FakeCrm, dispatcher: RecordingDispatcher
) -> None:
    seed(loke)
    assert connect(client, crm).status_code == 201
    run_backfill(app, dispatcher)
    delivered(app, crm)
    people = [make_customer(f"C{n}", NOW - 400 * DAY) for n in range(3)]
    # Changes at LOKE whose webhooks LOKE gave up on: a new payment, and a refund, now (not at
    # the module's import: the reconciliation reads back to its last start).
    now = dt.datetime.now(dt.UTC)
    loke.upsert_payment(ORG, make_payment("P-new", people[1], now))
    loke.upsert_payment(ORG, make_payment("P-recent-1", people[0], NOW - 10 * DAY,
                                          refundedAt=now, state="refunded"))  # fmt: skip
    with app.app_context():
        healed = reconcile(services_of(app), current_loke_client(), ORG)
    assert healed is not None
    assert healed.payments_changed == 2
    held = delivered(app, crm)
    assert held["P-new"] == "completed"
    assert held["P-recent-1"] == "refunded"
    # The completion's late copy (LOKE's list showing it completed again) changes nothing.
    loke.upsert_payment(ORG, make_payment("P-recent-1", people[0], NOW - 10 * DAY))
    with app.app_context():
        reconcile(services_of(app), current_loke_client(), ORG)
    assert delivered(app, crm)["P-recent-1"] == "refunded"


def test_the_sandbox_can_lose_payment_webhooks_for_good() -> None:
    from devtools.sandbox.firer import DeliveryStyle
    from devtools.sandbox.server import LokeSandbox
    from tests.support.fake_loke import customer_event, payment_event

    style = DeliveryStyle(lost_payment_ratio=1.0)
    with LokeSandbox("id", "secret", style=style) as sandbox:
        sandbox.add_org(ORG)
        sandbox.subscriptions[(ORG, "ref")] = {
            "url": "http://127.0.0.1:9/none", "secret": "s" * 16,
            "events": ["payment.completed", "customer.updated"],
        }  # fmt: skip
        person = make_customer("C1", NOW)
        assert (
            sandbox.emit(ORG, payment_event("completed", ORG, make_payment("P1", person, NOW))) == 0
        )
        assert sandbox.emit(ORG, customer_event("customer.updated", ORG, person)) == 1
        assert [b["event"] for b in sandbox.lost_webhooks] == ["payment.completed"]


def test_the_dashboard_shows_the_payment_history_and_what_the_backfill_read(
    app: Flask,
    client: FlaskClient,
    loke: FakeLoke,
    crm: FakeCrm,
    dispatcher: RecordingDispatcher,
    signed_in: str,  # noqa: F811
) -> None:
    seed(loke)
    assert connect(client, crm, paymentHistorySince="2026-01-01").status_code == 201
    run_backfill(app, dispatcher)
    shown = page(client, f"/orgs/{ORG}")
    assert "payments since 2026-01-01" in shown
    assert "5 read" in shown
