"""List resyncs, driven page by page against the fake LOKE (on SQLite and on PostgreSQL), delivered
to the CRM."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.core.config import Settings
from app.core.services import Services
from app.core.task_names import LISTS_READ, LISTS_STAGE
from app.delivery.sender import flush_org
from app.lists import reader, runs, staging
from app.store.models import ListMember, ListSyncRun
from devtools.crm import FakeCrm
from tests.conftest import AUTH, destination, services_of
from tests.support.fake_loke import FakeLoke, make_customer
from tests.support.list_tasks import ListTasks, run_task, staging_tables

ORG = "org-lists"
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
IDS = [f"M{n:03d}" for n in range(10)]


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store  # the SQL differs per dialect: run on both


@pytest.fixture
def client(app: Flask, loke: FakeLoke, crm: FakeCrm) -> FlaskClient:
    loke.set_customers(ORG, [make_customer(cid, NOW) for cid in IDS])
    loke.set_list(ORG, "L1", "VIPs", IDS[:6])
    loke.set_list(ORG, "L2", "Lunch club", IDS[5:])
    loke.set_list(ORG, "L3", "Not chosen", IDS[:2])
    client = app.test_client()
    body = {"destination": destination(crm, batchSize=7), "lists": ["L1", "L2"]}
    assert client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH).status_code == 201
    return client


def resync(app: Flask) -> list[ListSyncRun]:
    """What the lists queue does: start a resync of every chosen list (a run already going is
    resumed, as the sweeper would), then run its reader and page tasks until each run ends."""
    services = services_of(app)
    tasks = ListTasks.from_now(app)
    started = runs.start_chosen(services, ORG)
    for s in started:
        if not s.started:
            runs.resume(services, s.run_id)
    tasks.run_all()
    return [run_of(services, s.run_id) for s in started]


def first_page_only(app: Flask, run_id: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's first page is read and staged; then its worker dies (what it sent is lost)."""
    monkeypatch.setattr(reader, "READ_SECONDS", -1.0)
    tasks = ListTasks.from_now(app)
    run_task(app, (LISTS_READ, (run_id,)))
    tasks.run(LISTS_STAGE, run_id, 0)


def run_of(services: Services, run_id: int) -> ListSyncRun:
    with services.db.transaction() as session:
        run = session.get(ListSyncRun, run_id)
        assert run is not None
        return run


def deliver(app: Flask) -> None:
    services = services_of(app)
    for _ in range(50):
        if flush_org(services, ORG).resume_in is None:
            return
    raise AssertionError("delivery did not settle")


def list_ops(crm: FakeCrm, since: int = 0) -> list[tuple[str, str, str]]:
    return sorted(
        (op["type"], op["listId"], op["customerId"])
        for batch in crm.batches[since:]
        for op in batch["operations"]
        if op["type"].startswith("list.")
    )


def test_the_first_sync_adds_every_member_of_the_chosen_lists_only(
    app: Flask, client: FlaskClient, crm: FakeCrm
) -> None:
    finished = resync(app)
    assert [(r.list_id, r.status, r.adds, r.removes) for r in finished] == [
        ("L1", "finished", 6, 0),
        ("L2", "finished", 5, 0),
    ]
    deliver(app)
    assert crm.list_members[(ORG, "L1")] == set(IDS[:6])
    assert crm.list_members[(ORG, "L2")] == set(IDS[5:])
    assert (ORG, "L3") not in crm.list_members
    assert crm.list_names[(ORG, "L1")] == "VIPs"
    assert crm.violations() == []


def test_members_unknown_to_the_mirror_reach_the_crm_as_contacts_before_their_list_add(
    app: Flask, client: FlaskClient, crm: FakeCrm
) -> None:
    resync(app)  # no backfill ran: the mirror knows nobody yet
    deliver(app)
    seen: list[str] = []
    for batch in crm.batches:
        for op in batch["operations"]:
            if op["type"] == "contact.upsert":
                seen.append(op["customerId"])
            elif op["type"] == "list.add":
                assert op["customerId"] in seen, f"list.add before contact {op['customerId']}"
    assert set(seen) == set(IDS)


def test_the_next_sync_sends_exactly_the_changes(
    app: Flask, client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    resync(app)
    deliver(app)
    before = len(crm.batches)
    # At LOKE: M000 leaves L1, M009 moves from L2 to L1, M001 joins L2.
    loke.set_list(ORG, "L1", "VIPs", [*IDS[1:6], "M009"])
    loke.set_list(ORG, "L2", "Lunch club", ["M001", *IDS[5:9]])
    finished = resync(app)
    deliver(app)
    assert list_ops(crm, since=before) == [
        ("list.add", "L1", "M009"),
        ("list.add", "L2", "M001"),
        ("list.remove", "L1", "M000"),
        ("list.remove", "L2", "M009"),
    ]
    assert [(r.adds, r.removes) for r in finished] == [(1, 1), (1, 1)]
    assert crm.list_members[(ORG, "L1")] == {*IDS[1:6], "M009"}
    # Nothing changed: a third sync sends nothing at all.
    settled = len(crm.batches)
    resync(app)
    deliver(app)
    assert len(crm.batches) == settled


def test_a_run_that_dies_half_way_leaves_membership_untouched_and_a_rerun_finishes(
    app: Flask,
    client: FlaskClient,
    loke: FakeLoke,
    crm: FakeCrm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = services_of(app)
    loke.page_size = 2
    resync(app)
    deliver(app)
    loke.set_list(ORG, "L1", "VIPs", IDS[2:8])
    [first, _] = runs.start_chosen(services, ORG)
    first_page_only(app, first.run_id, monkeypatch)
    with services.db.transaction() as session:
        stored = set(session.scalars(select(ListMember.customer_id).where(
            ListMember.list_id == "L1")))  # fmt: skip
    assert stored == set(IDS[:6])
    again = runs.start(services, ORG, "L1")
    assert (again.run_id, again.started) == (first.run_id, False)  # the running row is the lock
    resync(app)  # resumed from the checkpoint, as the sweeper would
    deliver(app)
    assert crm.list_members[(ORG, "L1")] == set(IDS[2:8])
    assert staging_tables(services) == []


def test_a_list_deleted_at_loke_ends_cleanly_and_is_reported(
    app: Flask, client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    body: dict[str, Any] = {"lists": ["L1", "GONE"]}
    assert client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH).status_code == 200
    by_list = {r.list_id: r for r in resync(app)}
    assert by_list["GONE"].status == "gone"
    assert "404" in (by_list["GONE"].last_error or "")
    assert by_list["L1"].status == "finished"
    status = client.get(f"/api/orgs/{ORG}", headers=AUTH).get_json()
    assert isinstance(status, dict)
    reported = {s["id"]: s["lastRun"] for s in status["listSync"]}
    assert reported["GONE"]["status"] == "gone"
    assert reported["L1"]["adds"] == 6


def test_the_lists_endpoint_shows_every_loke_list_and_which_are_synced(
    app: Flask, client: FlaskClient
) -> None:
    resync(app)
    answer = client.get(f"/api/orgs/{ORG}/lists", headers=AUTH)
    assert answer.status_code == 200
    found = {item["id"]: item for item in answer.get_json()["lists"]}
    assert set(found) == {"L1", "L2", "L3"}
    assert [found[i]["synced"] for i in ("L1", "L2", "L3")] == [True, True, False]
    assert found["L1"]["memberCount"] == 6
    assert found["L1"]["membersStored"] == 6
    assert found["L1"]["lastRun"]["status"] == "finished"


def test_sync_now_starts_one_run_per_chosen_list_and_a_second_trigger_joins_it(
    app: Flask, client: FlaskClient
) -> None:
    first = client.post(f"/api/orgs/{ORG}/lists/sync", headers=AUTH)
    second = client.post(f"/api/orgs/{ORG}/lists/sync", headers=AUTH)
    assert first.status_code == second.status_code == 202
    assert [r["started"] for r in first.get_json()["runs"]] == [True, True]
    assert [r["started"] for r in second.get_json()["runs"]] == [False, False]
    assert [r["runId"] for r in first.get_json()["runs"]] == [
        r["runId"] for r in second.get_json()["runs"]
    ]


def test_a_list_removed_from_the_choice_stops_its_running_sync(
    app: Flask, client: FlaskClient, loke: FakeLoke
) -> None:
    services = services_of(app)
    tasks = ListTasks.from_now(app)
    [run, other] = runs.start_chosen(services, ORG)
    assert client.put(f"/api/orgs/{ORG}", json={"lists": ["L2"]}, headers=AUTH).status_code == 200
    assert run_of(services, run.run_id).status == "cancelled"
    tasks.run_all()  # its reader reads nothing; L2's finishes
    assert run_of(services, run.run_id).status == "cancelled"
    assert run_of(services, other.run_id).status == "finished"


def test_staging_of_a_run_that_stopped_half_way_is_cleared_by_the_sweeper(
    app: Flask, client: FlaskClient, loke: FakeLoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(app)
    loke.page_size = 2
    [first, second] = runs.start_chosen(services, ORG)
    first_page_only(app, first.run_id, monkeypatch)
    assert runs.clear_stale_staging(services) == 0  # still running: its staging is kept
    assert staging_tables(services) == [f"list_staging_{r.run_id}" for r in (first, second)]
    with services.db.transaction() as session:
        run = session.get(ListSyncRun, first.run_id)
        assert run is not None
        run.status = "failed"  # e.g. LOKE kept answering 500 for the next page
    assert runs.clear_stale_staging(services) == 1
    assert staging_tables(services) == [f"list_staging_{second.run_id}"]  # still running


def test_the_sweeper_drops_a_backlog_of_stopped_runs_staging_a_few_tables_a_transaction(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(app)
    monkeypatch.setattr(staging, "DROPS_PER_TRANSACTION", 2)
    run_ids = [runs.start(services, ORG, f"L{n}").run_id for n in range(1, 6)]
    with services.db.transaction() as session:
        for run_id in run_ids[:4]:
            session.get_one(ListSyncRun, run_id).status = "failed"
    assert runs.clear_stale_staging(services) == 4  # in three transactions: 2, 2, 0
    assert staging_tables(services) == [f"list_staging_{run_ids[4]}"]  # still running
