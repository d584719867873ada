"""Member pages of a resync staged side by side: each task records the next page and sends its task
before it stages its own; the run completes when the last page and every page before it are in,
whatever order they were staged in (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app import list_pages, lists, loke_client
from app.config import Settings
from app.models import ListMember, ListRunPage, ListStaging, ListSyncRun, OutboxEntry
from app.services import Services
from app.task_names import DELIVERY_FLUSH, LISTS_PAGE
from tests.conftest import AUTH, RecordingDispatcher, destination, services_of
from tests.support.fake_crm import RecordingCrm
from tests.support.fake_loke import FakeLoke, make_customer

ORG = "org-pages"
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
IDS = [f"Q{n:03d}" for n in range(7)]  # pages of 2: four pages, the last with one member


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store  # the SQL differs per dialect: run on both


@pytest.fixture
def client(app: Flask, loke: FakeLoke, crm: RecordingCrm) -> FlaskClient:
    loke.page_size = 2
    loke.set_customers(ORG, [make_customer(cid, NOW) for cid in IDS])
    loke.set_list(ORG, "L1", "VIPs", IDS)
    client = app.test_client()
    body = {"destination": destination(crm), "lists": ["L1"]}
    assert client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH).status_code == 201
    return client


def page_tasks(dispatcher: RecordingDispatcher) -> list[tuple[Any, ...]]:
    return [args for name, args, _, _ in dispatcher.sent if name == LISTS_PAGE]


def run_task(app: Flask, args: tuple[Any, ...]) -> None:
    with app.app_context():
        list_pages.run_page(services_of(app), loke_client(), *args)


def run_newest(app: Flask, dispatcher: RecordingDispatcher, times: int = 1) -> None:
    """Run the task sent last, `times` times over: the chain of pages, one page each."""
    for _ in range(times):
        run_task(app, page_tasks(dispatcher)[-1])


def read_all(app: Flask, dispatcher: RecordingDispatcher) -> int:
    """Start a resync of L1 and run its four page tasks in order; the run's id."""
    [started] = lists.start_chosen(services_of(app), ORG)
    run_newest(app, dispatcher, 4)
    return started.run_id


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


def test_each_task_sends_the_next_with_its_url_and_the_run_finishes(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher
) -> None:
    services = services_of(app)
    [started] = lists.start_chosen(services, ORG)
    assert page_tasks(dispatcher)[-1] == (started.run_id,)  # the first: no URL, resumes
    run_newest(app, dispatcher, 4)
    tasks = page_tasks(dispatcher)
    assert [len(args) for args in tasks] == [1, 4, 4, 4]  # the last page sends nothing
    assert [args[3] for args in tasks[1:]] == [1, 2, 3]
    assert tasks[3][2] == tasks[2][1]  # each names the page before it, for loop detection
    run = the_run(services, started.run_id)
    assert (run.status, run.pages, run.members, run.adds) == ("finished", 4, 7, 7)
    assert stored(services) == set(IDS)
    assert count(services, ListStaging) == count(services, ListRunPage) == 0


def test_pages_staged_out_of_order_complete_the_run_only_when_every_page_is_in(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher, monkeypatch: Any
) -> None:
    services = services_of(app)
    [started] = lists.start_chosen(services, ORG)
    run_newest(app, dispatcher)  # page 0
    # The task of page 1 dies after sending the task of page 2, before staging its own page.
    real_stage = list_pages._stage

    def dies(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("worker killed")

    monkeypatch.setattr(list_pages, "_stage", dies)
    with pytest.raises(RuntimeError):
        run_newest(app, dispatcher)
    monkeypatch.setattr(list_pages, "_stage", real_stage)
    run_newest(app, dispatcher)  # page 2
    run_newest(app, dispatcher)  # page 3, the last: page 1 is still missing
    run = the_run(services, started.run_id)
    assert (run.status, run.pages, run.members) == ("running", 3, 5)
    assert stored(services) == set()  # the membership is untouched until every page is in

    # The sweeper finds the run stalled and sends its first task again: page 1 is read and
    # staged, and that completes the run.
    sent = len(page_tasks(dispatcher))
    run_task(app, (started.run_id,))
    assert len(page_tasks(dispatcher)) == sent  # every other page was staged: nothing to send
    run = the_run(services, started.run_id)
    assert (run.status, run.pages, run.members, run.adds) == ("finished", 4, 7, 7)
    assert stored(services) == set(IDS)


def test_a_duplicate_page_task_stages_nothing_twice_and_sends_nothing_twice(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher
) -> None:
    services = services_of(app)
    [started] = lists.start_chosen(services, ORG)
    run_newest(app, dispatcher)
    second = page_tasks(dispatcher)[-1]
    run_task(app, second)
    sent = len(dispatcher.sent)
    run_task(app, second)  # redelivered after its worker died having done everything
    assert len(dispatcher.sent) == sent
    run = the_run(services, started.run_id)
    assert (run.pages, run.members) == (2, 4)
    assert count(services, ListStaging) == 4


def test_a_member_listed_on_two_pages_is_added_once(
    app: Flask, client: FlaskClient, loke: FakeLoke, dispatcher: RecordingDispatcher
) -> None:
    services = services_of(app)
    [started] = lists.start_chosen(services, ORG)
    run_newest(app, dispatcher)  # page 0: Q000, Q001
    # The list changes while it is read: Q001 moves behind the offset of the next page.
    loke.set_list(ORG, "L1", "VIPs", ["Q000", "Q002", "Q001", *IDS[3:]])
    run_newest(app, dispatcher, 3)
    run = the_run(services, started.run_id)
    assert (run.status, run.members, run.adds) == ("finished", 7, 6)
    assert stored(services) == set(IDS) - {"Q002"}  # read neither time: added next time
    with services.db.transaction() as session:
        marked = session.scalar(
            select(func.count()).where(OutboxEntry.kind == "list", OutboxEntry.key == "L1:Q001")
        )
    assert marked == 1


def test_the_tasks_of_a_run_that_stopped_record_and_stage_nothing(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher
) -> None:
    services = services_of(app)
    [started] = lists.start_chosen(services, ORG)
    run_newest(app, dispatcher)
    # The list is no longer chosen: its running sync stops at once.
    assert client.put(f"/api/orgs/{ORG}", json={"lists": []}, headers=AUTH).status_code == 200
    assert the_run(services, started.run_id).status == "cancelled"
    sent = len(dispatcher.sent)
    run_newest(app, dispatcher)
    assert len(dispatcher.sent) == sent
    with services.db.transaction() as session:
        assert session.scalar(select(func.max(ListRunPage.seq))) == 1  # no page 2 recorded
    assert the_run(services, started.run_id).pages == 1
    assert lists.clear_stale_staging(services) == 2  # page 0's two members
    assert count(services, ListRunPage) == 0


def test_an_unreadable_member_is_left_out_and_the_rest_of_its_page_staged(
    app: Flask, client: FlaskClient, loke: FakeLoke, dispatcher: RecordingDispatcher
) -> None:
    services = services_of(app)
    broken = make_customer("Q003", NOW) | {"email": "x" * 2000}  # longer than any LOKE field
    loke.upsert_customer(ORG, broken)
    run = the_run(services, read_all(app, dispatcher))
    assert (run.status, run.pages, run.members, run.adds) == ("finished", 4, 6, 6)
    assert stored(services) == set(IDS) - {"Q003"}


def test_disconnecting_cancels_a_running_resync(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher
) -> None:
    services = services_of(app)
    [started] = lists.start_chosen(services, ORG)
    run_newest(app, dispatcher)
    assert client.delete(f"/api/orgs/{ORG}", headers=AUTH).status_code == 200
    assert the_run(services, started.run_id).status == "cancelled"


def test_staging_of_a_run_purged_with_its_organization_is_cleared_by_the_sweeper(
    app: Flask, client: FlaskClient, dispatcher: RecordingDispatcher
) -> None:
    services = services_of(app)
    lists.start_chosen(services, ORG)
    run_newest(app, dispatcher)
    assert client.delete(f"/api/orgs/{ORG}?purge=true", headers=AUTH).status_code == 200
    assert count(services, ListSyncRun) == 0
    assert lists.clear_stale_staging(services) == 2  # page 0's two members, of no run now
    assert count(services, ListStaging) == count(services, ListRunPage) == 0


@pytest.mark.parametrize(("big_diff", "outright"), [(7, True), (10_000, False)])
def test_after_a_big_diff_the_tables_are_analyzed_before_delivery_is_kicked(
    app: Flask,
    client: FlaskClient,
    dispatcher: RecordingDispatcher,
    monkeypatch: pytest.MonkeyPatch,
    big_diff: int,
    outright: bool,
) -> None:
    services = services_of(app)
    if services.db.dialect != "postgresql":
        pytest.skip("only PostgreSQL plans with statistics")
    monkeypatch.setattr(list_pages, "BIG_DIFF", big_diff)
    refreshed: list[tuple[bool, bool]] = []  # (only_if_stale, delivery kicked already)
    refresh = services.db.refresh_statistics

    def recorded(*tables: str, only_if_stale: bool = False) -> None:
        refreshed.append((only_if_stale, DELIVERY_FLUSH in dispatcher.names()))
        refresh(*tables, only_if_stale=only_if_stale)

    monkeypatch.setattr(services.db, "refresh_statistics", recorded)
    read_all(app, dispatcher)  # the first sync: 7 members added
    assert refreshed == [(not outright, False)]
    assert DELIVERY_FLUSH in dispatcher.names()
    with services.db.engine.connect() as connection:
        analyses = connection.exec_driver_sql(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'outbox'"
        ).scalar()
    assert analyses == (1 if outright else 0)  # 14 rows: stale only after a big diff
