"""Reconciliation's window, across several pages: a sweep reads customers and payments newest
change first and stops at the page that reaches the previous sweep's start minus the overlap
(the floor), applies what changed since, and saves its own start as the next sweep's watermark,
so a change committed late at LOKE (stamped before the sweep started) is read by the next one.
Both stores."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.backfill.reconcile import Reconciled, reconcile
from app.core.config import Settings
from app.loke.client import current_loke_client
from app.store.models import Customer, Organization, Payment
from devtools.crm import FakeCrm
from devtools.httpserver import Request, Response
from tests.conftest import AUTH, destination, services_of
from tests.support.fake_loke import FakeLoke, make_customer, make_payment

ORG = "org-window"
MINUTE = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)
PAGE_SIZE = 2


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store


class LokeLog:
    """Every API request the fake LOKE serves, with the time it came (tokens not included)."""

    def __init__(self, loke: FakeLoke) -> None:
        self.seen: list[tuple[dt.datetime, Request]] = []
        serve = loke._api

        def logged(request: Request, parts: list[str]) -> Response:
            self.seen.append((dt.datetime.now(dt.UTC), request))
            return serve(request, parts)

        loke._api = logged  # type: ignore[method-assign]

    def pages(self, endpoint: str, since: int = 0) -> list[int]:
        """The pages (1-based) of an organization's `endpoint` read from request `since` on."""
        numbers = []
        for _, request in self.seen[since:]:
            if request.path == f"/organizations/{ORG}/{endpoint}":
                after = request.param("after")
                offset = int(base64.urlsafe_b64decode(after).decode()) if after else 0
                numbers.append(offset // PAGE_SIZE + 1)
        return numbers

    def first_at(self, since: int) -> dt.datetime:
        return self.seen[since][0]


def sweep(app: Flask) -> Reconciled:
    with app.app_context():
        done = reconcile(services_of(app), current_loke_client(), ORG)
    assert done is not None
    return done


def watermark(app: Flask) -> dt.datetime:
    with services_of(app).db.transaction() as session:
        org = session.get(Organization, ORG)
        assert org is not None
        assert org.reconciled_until is not None
        return org.reconciled_until


def set_watermark(app: Flask, until: dt.datetime) -> None:
    with services_of(app).db.transaction() as session:
        org = session.get(Organization, ORG)
        assert org is not None
        org.reconciled_until = until


def stored(app: Flask) -> tuple[set[str], dict[str, str]]:
    with services_of(app).db.transaction() as session:
        people = set(session.scalars(select(Customer.id)))
        paid = {p.id: p.status for p in session.scalars(select(Payment))}
    return people, paid


def test_a_sweep_reads_back_to_the_floor_only_and_saves_its_own_start(
    app: Flask, client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    loke.add_org(ORG)
    body = {"destination": destination(crm), "paymentHistorySince": 0}
    assert client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH).status_code == 201
    # The previous sweep started two hours ago; the default overlap (10 minutes) puts the
    # floor at previous - 10 minutes. The backfill never runs here: all the mirror holds is
    # what the sweeps apply.
    overlap = dt.timedelta(seconds=services_of(app).settings.reconcile_overlap_seconds)
    assert overlap == 10 * MINUTE
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    previous = now - 120 * MINUTE
    set_watermark(app, previous)
    buyer = make_customer("C-recent", now - 30 * MINUTE)
    loke.page_size = PAGE_SIZE
    loke.set_customers(ORG, [
        buyer,                                                # page 1
        make_customer("C-overlap", previous - 5 * MINUTE),   # page 1: in the overlap
        make_customer("C-below", previous - 20 * MINUTE),    # page 2: past the floor
        make_customer("C-old-1", previous - DAY),            # page 2
        make_customer("C-old-2", previous - 2 * DAY),        # page 3: never read
    ])  # fmt: skip
    loke.set_payments(ORG, [
        make_payment("P-recent", buyer, now - 30 * MINUTE),                       # page 1
        make_payment("P-refunded", buyer, previous - 3 * DAY, state="refunded",
                     refundedAt=now - 40 * MINUTE),                               # page 1
        make_payment("P-overlap", buyer, previous - 5 * MINUTE),                  # page 2
        make_payment("P-below", buyer, previous - 20 * MINUTE),                   # page 2
        make_payment("P-old-1", buyer, previous - DAY),                           # page 3
        make_payment("P-old-2", buyer, previous - 2 * DAY),                       # page 3
    ])  # fmt: skip
    log = LokeLog(loke)
    before = dt.datetime.now(dt.UTC)

    first = sweep(app)

    # Each walk stopped at the page holding the first change older than the floor.
    assert log.pages("customers") == [1, 2]
    assert log.pages("payments") == [1, 2]
    assert first.pages == 4
    people, paid = stored(app)
    assert {"C-recent", "C-overlap"} <= people
    assert not people & {"C-old-2"}  # on a page never read
    # Payments changed since the floor, the refund included; none older.
    assert paid == {"P-recent": "completed", "P-refunded": "refunded", "P-overlap": "completed"}
    # The watermark is when the sweep started (before it asked LOKE anything), not when it
    # ended, nor the newest change it read (30 minutes old).
    first_until = watermark(app)
    assert before <= first_until <= log.first_at(0)

    # Committed late at LOKE, stamped before the first sweep started: found by the next one,
    # which reads only back to first_until - overlap (here, its first page of each).
    late = first_until - 5 * MINUTE
    loke.upsert_customer(ORG, make_customer("C-late", late))
    loke.upsert_payment(ORG, make_payment("P-late", buyer, late))
    since = len(log.seen)
    before = dt.datetime.now(dt.UTC)

    second = sweep(app)

    assert log.pages("customers", since) == [1]  # C-late, then C-recent: past the new floor
    assert log.pages("payments", since) == [1]  # P-late, then P-recent: past the new floor
    assert (second.pages, second.payments) == (2, 1)
    people, paid = stored(app)
    assert "C-late" in people
    assert paid["P-late"] == "completed"
    assert before <= watermark(app) <= log.first_at(since)
