"""Member pages of a resync: one reader stores each page and sends its task, page tasks stage
side by side; the run completes when the last page and every page before it are in, whatever
order they were staged in (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from app.core.config import Settings
from app.core.services import Services
from app.core.task_names import DELIVERY_FLUSH, LISTS_READ, LISTS_STAGE
from app.lists import diff, reader, runs, stager
from app.loke.client import LokeClient
from app.loke.errors import LokeError
from app.store.models import ListMember, ListRunPage, ListSyncRun, OutboxEntry
from devtools.crm import FakeCrm
from tests.conftest import AUTH, RecordingDispatcher, destination, services_of
from tests.support.fake_loke import FakeLoke, make_customer
from tests.support.list_tasks import ListTasks, run_task, staged_count, staging_tables

ORG = "org-pages"
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
IDS = [f"Q{n:03d}" for n in range(7)]  # pages of 2: four pages, the last with one member


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store  # the SQL differs per dialect: run on both


@pytest.fixture
def client(app: Flask, loke: FakeLoke, crm: FakeCrm) -> FlaskClient:
    loke.page_size = 2
    loke.set_customers(ORG, [make_customer(cid, NOW) for cid in IDS])
    loke.set_list(ORG, "L1", "VIPs", IDS)
    client = app.test_client()
    body = {"destination": destination(crm), "lists": ["L1"]}
    assert client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH).status_code == 201
    return client


@pytest.fixture
def tasks(app: Flask, dispatcher: RecordingDispatcher) -> ListTasks:
    return ListTasks(app, dispatcher)


@pytest.fixture
def page_by_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each reader reads one page, then hands over to the next: a reader can 'die' between."""
    monkeypatch.setattr(reader, "READ_SECONDS", -1.0)


def start(app: Flask) -> int:
    [started] = runs.start_chosen(services_of(app), ORG)
    return started.run_id


def read_all(app: Flask, tasks: ListTasks) -> int:
    """Start a resync of L1 and run its reader and page tasks; the run's id."""
    run_id = start(app)
    tasks.run_all()
    return run_id


def the_run(services: Services, run_id: int) -> ListSyncRun:
    with services.db.transaction() as session:
        run = session.get(ListSyncRun, run_id)
        assert run is not None
        session.expunge(run)
        return run


def count(services: Services, model: Any) -> int:
    with services.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def stored(services: Services) -> set[str]:
    with services.db.transaction() as session:
        return set(session.scalars(select(ListMember.customer_id)))


def stored_pages(services: Services) -> list[tuple[int, bool, bool, int | None]]:
    """(seq, has a next URL, has a body, members staged) of every page row."""
    with services.db.transaction() as session:
        rows = session.execute(
            select(
                ListRunPage.seq, ListRunPage.next_url, ListRunPage.body, ListRunPage.members
            ).order_by(ListRunPage.seq)
        ).all()
    return [(r.seq, r.next_url is not None, r.body is not None, r.members) for r in rows]


def test_the_reader_stores_every_page_and_sends_its_task_and_the_run_finishes(
    app: Flask, client: FlaskClient, tasks: ListTasks
) -> None:
    services = services_of(app)
    run_id = start(app)
    assert tasks.pending() == [(LISTS_READ, (run_id,))]
    tasks.run(LISTS_READ)
    assert tasks.pending() == [(LISTS_STAGE, (run_id, seq)) for seq in range(4)]
    assert stored_pages(services) == [
        (0, True, True, None), (1, True, True, None), (2, True, True, None),
        (3, False, True, None),
    ]  # fmt: skip
    assert the_run(services, run_id).pages == 0  # read, nothing staged yet
    tasks.run_all()
    run = the_run(services, run_id)
    assert (run.status, run.pages, run.members, run.adds) == ("finished", 4, 7, 7)
    assert stored(services) == set(IDS)
    assert staging_tables(services) == []
    assert count(services, ListRunPage) == 0


def test_pages_staged_out_of_order_complete_the_run_only_when_every_page_is_in(
    app: Flask, client: FlaskClient, tasks: ListTasks
) -> None:
    services = services_of(app)
    run_id = start(app)
    tasks.run(LISTS_READ)
    for seq in (3, 2, 0):
        tasks.run(LISTS_STAGE, run_id, seq)
    run = the_run(services, run_id)
    assert (run.status, run.pages, run.members) == ("running", 3, 5)
    assert stored_pages(services)[1] == (1, True, True, None)
    assert [p[2] for p in stored_pages(services)] == [False, True, False, False]  # bodies freed
    assert stored(services) == set()  # the membership is untouched until every page is in
    tasks.run(LISTS_STAGE, run_id, 1)
    run = the_run(services, run_id)
    assert (run.status, run.pages, run.members, run.adds) == ("finished", 4, 7, 7)
    assert stored(services) == set(IDS)


@pytest.mark.usefixtures("page_by_page")
def test_a_reader_hands_over_to_a_fresh_one_that_reads_on(
    app: Flask, client: FlaskClient, tasks: ListTasks
) -> None:
    services = services_of(app)
    run_id = start(app)
    tasks.run(LISTS_READ)
    assert tasks.pending() == [(LISTS_STAGE, (run_id, 0)), (LISTS_READ, (run_id,))]
    assert tasks.run_all() == 7  # three more readers, four pages
    run = the_run(services, run_id)
    assert (run.status, run.pages, run.members) == ("finished", 4, 7)


@pytest.mark.usefixtures("page_by_page")
def test_a_reader_that_finds_its_page_stored_by_another_stops(
    app: Flask, client: FlaskClient, tasks: ListTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(app)
    run_id = start(app)
    tasks.run(LISTS_READ)
    late = reader._where_to_read(services, run_id)  # a reader that is about to read page 1
    tasks.run(LISTS_READ)  # ... while another reader stores it first
    assert late is not None
    assert late.seq == 1
    sent = len(tasks.pending())
    monkeypatch.setattr(reader, "_where_to_read", lambda *_: late)
    run_task(app, (LISTS_READ, (run_id,)))
    assert len(tasks.pending()) == sent  # it stored and sent nothing
    assert [p[0] for p in stored_pages(services)] == [0, 1]


def test_a_duplicate_page_task_stages_nothing_twice(
    app: Flask, client: FlaskClient, tasks: ListTasks
) -> None:
    services = services_of(app)
    run_id = start(app)
    tasks.run(LISTS_READ)
    tasks.run(LISTS_STAGE, run_id, 0)
    sent = len(tasks.dispatcher.sent)
    run_task(app, (LISTS_STAGE, (run_id, 0)))  # redelivered after its worker died having staged
    assert len(tasks.dispatcher.sent) == sent
    run = the_run(services, run_id)
    assert (run.pages, run.members) == (1, 2)
    assert staged_count(services, run_id) == 2


@pytest.mark.usefixtures("page_by_page")
def test_a_stalled_run_is_resumed_from_its_pages(
    app: Flask, client: FlaskClient, tasks: ListTasks
) -> None:
    services = services_of(app)
    run_id = start(app)
    tasks.run(LISTS_READ)
    tasks.run(LISTS_READ)
    tasks.run(LISTS_STAGE, run_id, 0)
    # The worker dies: the task of page 1 and the next reader are lost.
    tasks.take(LISTS_STAGE, run_id, 1)
    tasks.take(LISTS_READ, run_id)
    assert tasks.pending() == []
    runs.resume(services, run_id)  # the sweeper found the run stalled
    assert tasks.pending() == [(LISTS_STAGE, (run_id, 1)), (LISTS_READ, (run_id,))]
    tasks.run_all()
    run = the_run(services, run_id)
    assert (run.status, run.pages, run.members, run.adds) == ("finished", 4, 7, 7)
    assert stored(services) == set(IDS)


def test_a_page_task_that_keeps_crashing_is_counted_and_its_run_stops_failed(
    app: Flask, client: FlaskClient, tasks: ListTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(app)
    limit = services.settings.backfill_page_attempts

    def crash(*_: object) -> None:
        raise RuntimeError("a bug in the diff")

    monkeypatch.setattr(diff, "apply_difference", crash)  # the last page's transaction
    run_id = start(app)
    tasks.run(LISTS_READ)
    for seq in range(3):
        tasks.run(LISTS_STAGE, run_id, seq)
    for crashes in range(1, limit + 1):
        with pytest.raises(RuntimeError):
            tasks.run(LISTS_STAGE, run_id, 3)
        run = the_run(services, run_id)
        assert (run.attempts, run.last_error) == (crashes, "RuntimeError: a bug in the diff")
        assert run.status == ("failed" if crashes == limit else "running")
        assert stored(services) == set()  # the membership is untouched
        runs.resume(services, run_id)  # the sweeper found the run stalled
        if run.status == "running":
            tasks.run(LISTS_READ)  # stops at once: every page is stored
    assert tasks.pending() == []  # a failed run is not resumed
    assert the_run(services, run_id).finished_at is not None
    runs.clear_stale_staging(services)
    assert (staging_tables(services), count(services, ListRunPage)) == ([], 0)

    monkeypatch.undo()  # the bug fixed: the next resync starts afresh
    run = the_run(services, read_all(app, tasks))
    assert (run.status, run.members, run.adds) == ("finished", 7, 7)
    assert stored(services) == set(IDS)


@pytest.mark.usefixtures("page_by_page")
def test_a_member_listed_on_two_pages_is_added_once(
    app: Flask, client: FlaskClient, loke: FakeLoke, tasks: ListTasks
) -> None:
    services = services_of(app)
    run_id = start(app)
    tasks.run(LISTS_READ)  # page 0: Q000, Q001
    # The list changes while it is read: Q001 moves behind the offset of the next page.
    loke.set_list(ORG, "L1", "VIPs", ["Q000", "Q002", "Q001", *IDS[3:]])
    tasks.run_all()
    run = the_run(services, run_id)
    assert (run.status, run.members, run.adds) == ("finished", 7, 6)
    assert stored(services) == set(IDS) - {"Q002"}  # read neither time: added next time
    with services.db.transaction() as session:
        marked = session.scalar(
            select(func.count()).where(OutboxEntry.kind == "list", OutboxEntry.key == "L1:Q001")
        )
    assert marked == 1


@pytest.mark.usefixtures("page_by_page")
def test_the_tasks_of_a_run_that_stopped_store_and_stage_nothing(
    app: Flask, client: FlaskClient, tasks: ListTasks
) -> None:
    services = services_of(app)
    run_id = start(app)
    tasks.run(LISTS_READ)
    tasks.run(LISTS_STAGE, run_id, 0)
    tasks.run(LISTS_READ)
    # The list is no longer chosen: its running sync stops at once.
    assert client.put(f"/api/orgs/{ORG}", json={"lists": []}, headers=AUTH).status_code == 200
    assert the_run(services, run_id).status == "cancelled"
    sent = len(tasks.dispatcher.sent)
    tasks.run_all()  # page 1's task and the next reader
    assert len(tasks.dispatcher.sent) == sent
    assert [p[0] for p in stored_pages(services)] == [0, 1]  # no page 2 stored
    assert the_run(services, run_id).pages == 1
    assert runs.clear_stale_staging(services) == 1  # the run's staging table, page 0 in it
    assert staging_tables(services) == []
    assert count(services, ListRunPage) == 0


def test_an_unreadable_member_is_left_out_and_the_rest_of_its_page_staged(
    app: Flask, client: FlaskClient, loke: FakeLoke, tasks: ListTasks
) -> None:
    services = services_of(app)
    broken = make_customer("Q003", NOW) | {"email": "x" * 2000}  # longer than any LOKE field
    loke.upsert_customer(ORG, broken)
    run = the_run(services, read_all(app, tasks))
    assert (run.status, run.pages, run.members, run.adds) == ("finished", 4, 6, 6)
    assert stored(services) == set(IDS) - {"Q003"}


def test_a_page_whose_body_is_unreadable_is_read_again_after_a_backoff(
    app: Flask, client: FlaskClient, tasks: ListTasks
) -> None:
    services = services_of(app)
    run_id = start(app)
    tasks.run(LISTS_READ)
    with services.db.transaction() as session:
        session.execute(update(ListRunPage).where(ListRunPage.seq == 1).values(body=b'[{"id": '))
    tasks.run(LISTS_STAGE, run_id, 1)
    run = the_run(services, run_id)
    assert (run.status, run.pages, run.attempts) == ("running", 0, 1)
    assert "unreadable body" in (run.last_error or "")
    [(name, args, _, countdown)] = tasks.dispatcher.sent[-1:]
    assert (name, args) == (LISTS_STAGE, (run_id, 1, True))
    assert countdown > 0
    tasks.run_all()
    run = the_run(services, run_id)
    assert (run.status, run.members, run.attempts) == ("finished", 7, 0)


def test_a_failed_read_is_tried_again_after_a_backoff_from_the_page_that_failed(
    app: Flask, client: FlaskClient, tasks: ListTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(app)
    run_id = start(app)
    real = LokeClient.get_unread_page
    calls = {"n": 0}

    def flaky(self: Any, paginator: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise LokeError("LOKE unreachable")
        return real(self, paginator)

    monkeypatch.setattr(LokeClient, "get_unread_page", flaky)
    tasks.run(LISTS_READ)
    assert [p[0] for p in stored_pages(services)] == [0, 1]
    [(name, args, _, countdown)] = tasks.dispatcher.sent[-1:]
    assert (name, args) == (LISTS_READ, (run_id,))
    assert countdown > 0
    assert the_run(services, run_id).attempts == 1
    tasks.run_all()
    run = the_run(services, run_id)
    assert (run.status, run.pages, run.members) == ("finished", 4, 7)


@pytest.mark.usefixtures("page_by_page")
def test_disconnecting_cancels_a_running_resync(
    app: Flask, client: FlaskClient, tasks: ListTasks
) -> None:
    services = services_of(app)
    run_id = start(app)
    tasks.run(LISTS_READ)
    assert client.delete(f"/api/orgs/{ORG}", headers=AUTH).status_code == 200
    assert the_run(services, run_id).status == "cancelled"


@pytest.mark.usefixtures("page_by_page")
def test_staging_of_a_run_purged_with_its_organization_goes_with_it(
    app: Flask, client: FlaskClient, tasks: ListTasks
) -> None:
    services = services_of(app)
    run_id = start(app)
    tasks.run(LISTS_READ)
    tasks.run(LISTS_STAGE, run_id, 0)
    assert staging_tables(services) != []
    assert client.delete(f"/api/orgs/{ORG}?purge=true", headers=AUTH).status_code == 200
    assert count(services, ListSyncRun) == 0
    assert staging_tables(services) == []  # member bodies are customer data: gone at once
    assert count(services, ListRunPage) == 0
    assert runs.clear_stale_staging(services) == 0  # nothing left for the sweeper


@pytest.mark.parametrize(("big_diff", "outright"), [(7, True), (10_000, False)])
def test_after_a_big_diff_the_tables_are_analyzed_before_delivery_is_kicked_else_after(
    app: Flask,
    client: FlaskClient,
    tasks: ListTasks,
    monkeypatch: pytest.MonkeyPatch,
    big_diff: int,
    outright: bool,
) -> None:
    services = services_of(app)
    if services.db.dialect != "postgresql":
        pytest.skip("only PostgreSQL plans with statistics")
    monkeypatch.setattr(stager, "BIG_DIFF", big_diff)
    refreshed: list[tuple[bool, bool]] = []  # (only_if_stale, delivery kicked already)
    refresh = services.db.refresh_statistics

    def recorded(*tables: str, only_if_stale: bool = False) -> None:
        refreshed.append((only_if_stale, DELIVERY_FLUSH in tasks.dispatcher.names()))
        refresh(*tables, only_if_stale=only_if_stale)

    monkeypatch.setattr(services.db, "refresh_statistics", recorded)
    read_all(app, tasks)  # the first sync: 7 members added
    # A small diff does not hold delivery up for statistics (only stale ones, and after).
    assert refreshed == [(False, False)] if outright else [(True, True)]
    assert DELIVERY_FLUSH in tasks.dispatcher.names()
    with services.db.engine.connect() as connection:
        analyses = connection.exec_driver_sql(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'outbox'"
        ).scalar()
    assert analyses == (1 if outright else 0)  # 14 rows: stale only after a big diff
