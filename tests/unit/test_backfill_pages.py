"""Backfill page tasks sent ahead: each task sends the next page's task (with its URL) before it
applies its own page, and a page is applied only once the checkpoint has reached it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, OperationalError

from app.backfill import customers as backfill_pages
from app.backfill import runs as backfill_runs
from app.core.config import Settings
from app.core.dispatch import BrokerUnavailable
from app.core.services import Services
from app.core.task_names import BACKFILL_PAGE
from app.factory import create_app
from app.loke.client import current_loke_client
from app.store.models import BackfillRun, Customer
from devtools.crm import FakeCrm
from tests.conftest import AUTH, RecordingDispatcher, destination, services_of
from tests.support.fake_loke import FakeLoke, make_customer

ORG = "org-pages"
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
IDS = [f"P{n:03d}" for n in range(9)]


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store  # the SQL differs per dialect: run on both


@pytest.fixture
def client(app: Flask, loke: FakeLoke, crm: FakeCrm) -> FlaskClient:
    loke.page_size = 3
    loke.set_customers(ORG, [make_customer(cid, NOW) for cid in IDS])
    client = app.test_client()
    # Customers only: tests/unit/test_payment_history.py reads payments after them.
    body = {"destination": destination(crm), "paymentHistorySince": 0}
    assert client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH).status_code == 201
    return client


def page_tasks(dispatcher: RecordingDispatcher) -> list[tuple[Any, ...]]:
    return [args for name, args, _, _ in dispatcher.sent if name == BACKFILL_PAGE]


def the_run(services: Services) -> BackfillRun:
    with services.db.transaction() as session:
        run = session.scalars(select(BackfillRun)).one()
        session.expunge(run)
        return run


def stored(services: Services) -> int:
    with services.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Customer)) or 0)


def test_each_page_task_sends_the_next_with_its_url_and_the_run_finishes(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher
) -> None:
    services = services_of(app)
    [(run_id,)] = page_tasks(dispatcher)  # from the connect: no URL, read the checkpoint
    with app.app_context():
        for _ in range(3):
            backfill_pages.run_page(services, current_loke_client(), *page_tasks(dispatcher)[-1])
    tasks = page_tasks(dispatcher)
    assert len(tasks) == 3  # the last page sends nothing
    assert [len(args) for args in tasks] == [1, 3, 3]
    assert tasks[2][2] == tasks[1][1]  # each names the page before it, for loop detection
    run = the_run(services)
    assert (run.status, run.pages, run.customers, run.next_url) == ("finished", 3, 9, None)
    assert stored(services) == 9
    assert run_id == run.id


def test_a_page_sent_ahead_waits_for_the_page_before_it(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher
) -> None:
    services = services_of(app)
    with app.app_context():
        backfill_pages.run_page(services, current_loke_client(), *page_tasks(dispatcher)[0])
        second = page_tasks(dispatcher)[-1]
        backfill_pages.run_page(services, current_loke_client(), *second)
        third = page_tasks(dispatcher)[-1]
        checkpoint = the_run(services).next_url
        assert checkpoint == third[1]

        # The task of page 2 runs again (a redelivery after its worker died): the checkpoint
        # has moved past its URL, so nothing is applied twice and nothing more is sent.
        sent = len(dispatcher.sent)
        backfill_pages.run_page(services, current_loke_client(), *second)
        assert len(dispatcher.sent) == sent
        run = the_run(services)
        assert (run.pages, run.customers, run.next_url) == (2, 6, checkpoint)

        # A task sent ahead whose page before was never applied (that transaction rolled back):
        # its page is not applied out of order; the retry of the page before will resend it.
        with services.db.transaction() as session:
            found = session.get(BackfillRun, run.id)
            assert found is not None
            found.next_url, found.pages, found.customers = second[1], 1, 3
        backfill_pages.run_page(services, current_loke_client(), *third)
        run = the_run(services)
        assert (run.status, run.pages, run.customers, run.next_url) == ("running", 1, 3, second[1])
        assert len(dispatcher.sent) == sent


def test_an_unreadable_record_is_counted_and_the_rest_of_its_page_applied(
    app: Flask, loke: FakeLoke, crm: FakeCrm, dispatcher: RecordingDispatcher
) -> None:
    broken = make_customer("P999", NOW)
    del broken["updatedAt"]  # cannot be ordered against webhooks: refused
    loke.set_customers(ORG, [*(make_customer(cid, NOW) for cid in IDS[:5]), broken])
    client = app.test_client()
    body = {"destination": destination(crm), "paymentHistorySince": 0}
    assert client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH).status_code == 201
    services = services_of(app)
    with app.app_context():
        backfill_pages.run_page(services, current_loke_client(), *page_tasks(dispatcher)[0])
    run = the_run(services)
    assert (run.status, run.customers, run.invalid) == ("finished", 5, 1)
    assert stored(services) == 5


def test_a_page_task_that_keeps_crashing_is_counted_and_its_run_stops_failed_then_resumes(
    app: Flask,
    client: FlaskClient,
    dispatcher: RecordingDispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = services_of(app)
    limit = services.settings.backfill_page_attempts
    [(run_id,)] = page_tasks(dispatcher)
    with app.app_context():
        backfill_pages.run_page(
            services, current_loke_client(), run_id
        )  # the first page is applied

        def crash(*_: object) -> None:
            raise RuntimeError("a bug in the mirror")

        monkeypatch.setattr(backfill_pages, "apply_customers", crash)
        for crashes in range(1, limit + 1):
            with pytest.raises(RuntimeError):
                backfill_pages.run_page(
                    services, current_loke_client(), run_id
                )  # as the sweeper sends it
            run = the_run(services)
            assert (run.attempts, run.last_error) == (crashes, "RuntimeError: a bug in the mirror")
            assert run.status == ("failed" if crashes == limit else "running")
            assert (run.pages, run.customers) == (1, 3)  # the checkpoint stays at page 2
        assert run.finished_at is not None

        monkeypatch.undo()  # the bug fixed: starting it again resumes from the checkpoint
        assert backfill_runs.start(services, ORG).run_id == run_id
        for _ in range(2):
            backfill_pages.run_page(services, current_loke_client(), *page_tasks(dispatcher)[-1])
    run = the_run(services)
    assert (run.status, run.pages, run.customers, run.attempts) == ("finished", 3, 9, 0)
    assert stored(services) == 9


@pytest.mark.parametrize(
    "outage",
    [
        OperationalError("UPDATE customers", {}, Exception("server closed the connection")),
        DBAPIError("SELECT 1", {}, Exception("connection closed"), connection_invalidated=True),
        BrokerUnavailable("backfill.page not sent: Redis refused the connection"),
    ],
    ids=["database-lost", "connection-invalidated", "broker-down"],
)
def test_an_outage_of_the_database_or_broker_is_not_counted_as_a_crash(
    app: Flask,
    client: FlaskClient,
    dispatcher: RecordingDispatcher,
    monkeypatch: pytest.MonkeyPatch,
    outage: Exception,
) -> None:
    services = services_of(app)
    [(run_id,)] = page_tasks(dispatcher)

    def down(*_: object) -> None:
        raise outage

    monkeypatch.setattr(backfill_pages, "apply_customers", down)
    with app.app_context():
        for _ in range(services.settings.backfill_page_attempts + 1):
            with pytest.raises(type(outage)):
                backfill_pages.run_page(services, current_loke_client(), run_id)
    run = the_run(services)
    assert (run.status, run.attempts, run.last_error) == ("running", 0, None)


def test_a_page_read_without_loke_credentials_fails_the_run_at_once_saying_why(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher, settings: Settings
) -> None:
    # Connected while the credentials were set; read after they were removed from the
    # environment: no retry can succeed, so the run fails now instead of after every try.
    unconfigured = settings.model_copy(update={"loke_client_id": None, "loke_client_secret": None})
    other = create_app(unconfigured, RecordingDispatcher())
    [(run_id,)] = page_tasks(dispatcher)
    try:
        with other.app_context():
            backfill_pages.run_page(services_of(other), current_loke_client(), run_id)
    finally:
        services_of(other).db.dispose()
    run = the_run(services_of(app))
    assert run.status == "failed"
    assert "LOKE_CLIENT_ID and LOKE_CLIENT_SECRET are needed" in (run.last_error or "")
