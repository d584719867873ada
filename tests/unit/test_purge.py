"""Disconnecting and purging: done here whatever LOKE says (an organization that uninstalled the
add-on refuses the unsubscribe), the refusal reported; and a purge leaves no row of the
organization in any table, found from the models' metadata so that a table added later
cannot be forgotten."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from app.core.config import Settings
from app.core.services import Services
from app.core.task_names import LISTS_READ
from app.delivery.sender import flush_org
from app.ingest.apply import drain_inbox
from app.lists import runs as list_runs
from app.orgs import purge
from app.store.db import utcnow
from app.store.models import Base, CrmContact, CrmList, DeliveryConflict, ListRunPage, ListSyncRun
from devtools.crm import FakeCrm
from tests.conftest import AUTH, destination, services_of
from tests.support.fake_loke import (
    FakeLoke,
    customer_event,
    make_customer,
    make_payment,
    payment_event,
    sign,
)
from tests.support.list_tasks import ListTasks, run_task, staging_tables

GONE, KEPT = "org-purged", "org-kept"
NOW = dt.datetime(2026, 10, 1, 9, 0, tzinfo=dt.UTC)
SUBSCRIPTION = (GONE, "loke-crm-sync")


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store


def connect(client: FlaskClient, loke: FakeLoke, crm: FakeCrm, org: str) -> str:
    loke.set_list(org, "L1", "VIPs", ["C1", "C2"])
    body = {"destination": destination(crm), "lists": ["L1"]}
    assert client.put(f"/api/orgs/{org}", json=body, headers=AUTH).status_code == 201
    return loke.secret_for(org)


def webhook(client: FlaskClient, org: str, secret: str, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Event-Signature": sign(raw, secret)}
    assert client.post(f"/webhooks/loke/{org}", data=raw, headers=headers).status_code == 202


def fill(app: Flask, client: FlaskClient, loke: FakeLoke, crm: FakeCrm, org: str) -> None:
    """The organization with rows in every table a connected organization fills: customers,
    payments, inbox, outbox, a dead letter and the delivery state, a backfill run, a finished
    list resync (the list and its members) and a running one half read (its pages and its
    staging table), and what a CRM told us (contacts, lists, conflicts)."""
    services = services_of(app)
    secret = connect(client, loke, crm, org)
    c1, c2 = make_customer("C1", NOW), make_customer("C2", NOW)
    webhook(client, org, secret, customer_event("customer.created", org, c1))
    webhook(client, org, secret, customer_event("customer.created", org, c2))
    webhook(client, org, secret, payment_event("completed", org, make_payment("P1", c1, NOW)))
    drain_inbox(services)
    crm.reject_customer("C2")
    flush_org(services, org)
    tasks = ListTasks.from_now(app)
    list_runs.start_chosen(services, org)
    tasks.run_all()
    tasks = ListTasks.from_now(app)
    [started] = list_runs.start_chosen(services, org)
    assert started.started
    run_task(app, tasks.take(LISTS_READ, started.run_id))  # read, not staged: pages are kept
    with services.db.transaction() as session:
        now = utcnow()
        session.add(CrmContact(org_id=org, customer_id="C1", record_id="101", updated_at=now))
        session.add(CrmList(org_id=org, list_id="L1", crm_list_id="7", name="VIPs", updated_at=now))
        session.add(
            DeliveryConflict(org_id=org, customer_id="C2", email="c2@example.com",
                             reason="email taken", detected_at=now)
        )  # fmt: skip


def per_org_tables() -> list[str]:
    return sorted(t.name for t in Base.metadata.sorted_tables if "org_id" in t.columns)


def rows_of(services: Services, org: str, list_run_ids: set[int]) -> dict[str, int]:
    """Rows of the organization in each table with an org_id column, its row in organizations,
    and the pages of its list runs (`list_run_ids`: taken before a purge deletes the runs)."""
    counts: dict[str, int] = {}
    with services.db.transaction() as session:
        for name in per_org_tables():
            table = Base.metadata.tables[name]
            counts[name] = (
                session.scalar(select(func.count()).select_from(table).where(table.c.org_id == org))
                or 0
            )
        counts["organizations"] = (
            session.scalar(text("SELECT count(*) FROM organizations WHERE id = :org"), {"org": org})
            or 0
        )
        counts["list_run_pages"] = (
            session.scalar(select(func.count()).where(ListRunPage.run_id.in_(list_run_ids))) or 0
        )
    return counts


def staging_of(services: Services, run_ids: set[int]) -> list[str]:
    return [name for name in staging_tables(services) if int(name.rsplit("_", 1)[1]) in run_ids]


def run_ids(services: Services, org: str) -> set[int]:
    with services.db.transaction() as session:
        return set(session.scalars(select(ListSyncRun.id).where(ListSyncRun.org_id == org)))


def test_a_purge_leaves_no_row_of_the_organization_in_any_table(
    app: Flask, client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    services = services_of(app)
    fill(app, client, loke, crm, GONE)
    fill(app, client, loke, crm, KEPT)
    gone_runs, kept_runs = run_ids(services, GONE), run_ids(services, KEPT)
    before = rows_of(services, GONE, gone_runs)
    empty = [name for name, count in before.items() if count == 0]
    assert empty == [], f"the test no longer fills {empty}: make it"
    kept_before = rows_of(services, KEPT, kept_runs)
    assert staging_of(services, gone_runs)

    answer: Any = client.delete(f"/api/orgs/{GONE}?purge=true", headers=AUTH)

    assert answer.status_code == 200, answer.json
    assert answer.json["purged"] is True
    assert rows_of(services, GONE, gone_runs) == dict.fromkeys(before, 0)
    assert staging_of(services, gone_runs) == []
    assert rows_of(services, KEPT, kept_runs) == kept_before  # nothing of another organization
    assert staging_of(services, kept_runs)
    assert client.get(f"/api/orgs/{KEPT}/customers/C1", headers=AUTH).status_code == 200


def test_every_table_is_either_kept_per_organization_or_known_to_the_purge() -> None:
    """A new table without an org_id column must be placed: purged through another table's
    rows, or shared by every organization. Otherwise a purge would silently leave it."""
    for table in Base.metadata.sorted_tables:
        assert (
            "org_id" in table.columns
            or table.name in purge.OWN_ROW
            or table.name in purge.THROUGH
            or table.name in purge.SHARED
        ), f"{table.name}: say in app/orgs/purge.py how a purge treats it"


@pytest.mark.parametrize("query", ["?purge=true", ""])
def test_disconnecting_an_organization_loke_refuses_is_done_here_and_the_refusal_reported(
    app: Flask, client: FlaskClient, loke: FakeLoke, crm: FakeCrm, query: str
) -> None:
    services = services_of(app)
    secret = connect(client, loke, crm, GONE)
    created = customer_event("customer.created", GONE, make_customer("C1", NOW))
    webhook(client, GONE, secret, created)
    drain_inbox(services)
    loke.fail_next(1, status=403)  # the organization uninstalled the add-on

    answer: Any = client.delete(f"/api/orgs/{GONE}{query}", headers=AUTH)

    assert answer.status_code == 200, answer.json
    assert answer.json["status"] == "disconnected"
    assert answer.json["unsubscribed"] is False
    assert "403" in answer.json["unsubscribeError"]
    if query:
        assert answer.json["purged"] is True
        assert set(rows_of(services, GONE, set()).values()) == {0}
        assert client.get(f"/api/orgs/{GONE}", headers=AUTH).status_code == 404
    else:
        status: Any = client.get(f"/api/orgs/{GONE}", headers=AUTH).json
        assert status["connected"] is False
        assert status["subscription"]["status"] == "error"
        assert "403" in status["subscription"]["error"]
    # Disconnected here: LOKE's webhooks, if it still sends them, are no longer taken.
    body = customer_event("customer.created", GONE, make_customer("C2", NOW))
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Event-Signature": sign(raw, secret)}
    assert client.post(f"/webhooks/loke/{GONE}", data=raw, headers=headers).status_code == 404


def test_a_disconnect_loke_accepts_reports_it_unsubscribed(
    client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    connect(client, loke, crm, GONE)
    answer: Any = client.delete(f"/api/orgs/{GONE}", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json == {
        "status": "disconnected", "purged": False, "unsubscribed": True, "unsubscribeError": None
    }  # fmt: skip
    assert SUBSCRIPTION not in loke.subscriptions
