"""Retention: what is old goes (applied events' bodies, then the events, replayed dead letters,
finished runs), what is still needed stays, and a first run on a big table goes in small
transactions. On SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.core.config import Settings
from app.core.services import Services
from app.core.task_names import RETENTION_PRUNE
from app.ingest import inbox
from app.retention import prune
from app.store.db import utcnow
from app.store.models import BackfillRun, CustomerList, DeadLetter, InboxEvent, ListSyncRun
from tasks import retention as retention_task
from tests.conftest import RecordingDispatcher, services_of

ORG = "org-retention"
BODY = '{"event": "customer.updated", "customer": {"id": "C1", "email": "a@example.com"}}'
_bodies = count()


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store  # deletes in chunks differ per dialect: run on both


def days_ago(days: float) -> dt.datetime:
    return utcnow() - dt.timedelta(days=days)


def add_event(services: Services, status: str, received_days_ago: float, org: str = ORG) -> int:
    """An inbox row as the receiver and a drain leave it; returns its id."""
    body = BODY.replace("C1", f"C{next(_bodies)}")
    received = days_ago(received_days_ago)
    with services.db.transaction() as session:
        row = InboxEvent(
            org_id=org,
            body_sha256=hashlib.sha256(body.encode()).hexdigest(),
            event_type="customer.updated",
            body=body,
            status=status,
            received_at=received,
            processed_at=None if status == "pending" else received + dt.timedelta(seconds=1),
            request_id="req",
        )
        session.add(row)
        session.flush()
        return row.id


def add_dead_letter(
    services: Services, created_days_ago: float, replayed_days_ago: float | None = None,
    inbox_id: int | None = None,
) -> int:  # fmt: skip
    with services.db.transaction() as session:
        letter = DeadLetter(
            org_id=ORG,
            kind="event" if inbox_id is not None else "operation",
            reason="refused",
            detail={},
            inbox_id=inbox_id,
            created_at=days_ago(created_days_ago),
            replayed_at=None if replayed_days_ago is None else days_ago(replayed_days_ago),
            replay_count=0 if replayed_days_ago is None else 1,
        )
        session.add(letter)
        session.flush()
        return letter.id


def run_fields(status: str, finished_days_ago: float | None) -> dict[str, Any]:
    started = days_ago((finished_days_ago or 0) + 1)
    finished = None if finished_days_ago is None else days_ago(finished_days_ago)
    return {"status": status, "next_url": None, "pages": 1, "attempts": 0, "started_at": started,
            "updated_at": finished or started, "finished_at": finished}  # fmt: skip


def add_backfill_run(
    services: Services, org: str, status: str, finished_days_ago: float | None
) -> int:
    with services.db.transaction() as session:
        run = BackfillRun(org_id=org, customers=0, invalid=0, phase="customers",
                          with_payments=False, payments=0,
                          **run_fields(status, finished_days_ago))  # fmt: skip
        session.add(run)
        session.flush()
        return run.id


def add_list_run(
    services: Services, list_id: str, status: str, finished_days_ago: float | None
) -> int:
    with services.db.transaction() as session:
        run = ListSyncRun(org_id=ORG, list_id=list_id, members=0, adds=0, removes=0,
                          **run_fields(status, finished_days_ago))  # fmt: skip
        session.add(run)
        session.flush()
        listed = session.get(CustomerList, (ORG, list_id))
        if listed is None:
            session.add(CustomerList(org_id=ORG, id=list_id, name=list_id, last_run_id=run.id))
        else:
            listed.last_run_id = run.id
        return run.id


def bodies(services: Services) -> dict[int, str]:
    with services.db.transaction() as session:
        return {row.id: row.body for row in session.execute(select(InboxEvent.id, InboxEvent.body))}


def ids_of(services: Services, model: Any) -> set[int]:
    with services.db.transaction() as session:
        return set(session.scalars(select(model.id)))


def test_bodies_of_old_applied_and_ignored_events_are_cleared_and_needed_ones_kept(
    services: Services,
) -> None:
    old_applied = add_event(services, "applied", 8)
    old_ignored = add_event(services, "ignored", 8)
    young_applied = add_event(services, "applied", 6)
    old_pending = add_event(services, "pending", 8)  # its organization's drain is stuck
    old_failed = add_event(services, "failed", 8)
    add_dead_letter(services, 8, inbox_id=old_failed)  # not replayed: a person must see it
    replayed_then_applied = add_event(services, "applied", 8)
    add_dead_letter(services, 8, replayed_days_ago=7.5, inbox_id=replayed_then_applied)

    result = prune.prune(services)

    kept = bodies(services)
    assert kept[old_applied] == kept[old_ignored] == ""
    assert all(
        kept[event] != ""
        for event in (young_applied, old_pending, old_failed, replayed_then_applied)
    )
    assert result.pruned["event_bodies"] == 2
    assert not result.more


def test_an_event_whose_body_was_cleared_is_still_a_duplicate_when_lok_sends_it_again(
    services: Services,
) -> None:
    body = BODY.encode()
    assert inbox.store(services.db, ORG, "customer.updated", body, "r1") is inbox.Stored.ACCEPTED
    with services.db.transaction() as session:
        row = session.scalars(select(InboxEvent)).one()
        row.status, row.received_at, row.processed_at = "applied", days_ago(8), days_ago(8)
    prune.prune(services)
    assert set(bodies(services).values()) == {""}
    assert inbox.store(services.db, ORG, "customer.updated", body, "r2") is inbox.Stored.DUPLICATE


def test_old_applied_and_ignored_events_are_deleted_and_needed_ones_kept(
    services: Services,
) -> None:
    old_applied = add_event(services, "applied", 31)
    old_ignored = add_event(services, "ignored", 31)
    younger = add_event(services, "applied", 29)
    old_pending = add_event(services, "pending", 31)
    old_failed = add_event(services, "failed", 31)
    add_dead_letter(services, 31, inbox_id=old_failed)
    replayed = add_event(services, "applied", 31)
    add_dead_letter(services, 31, replayed_days_ago=29, inbox_id=replayed)  # (kept 30 days)

    result = prune.prune(services)

    assert ids_of(services, InboxEvent) == {younger, old_pending, old_failed, replayed}
    assert bodies(services)[younger] == ""  # older than the bodies' 7 days
    assert result.pruned["events"] == 2
    assert old_applied not in ids_of(services, InboxEvent)
    assert old_ignored not in ids_of(services, InboxEvent)


def test_replayed_dead_letters_go_after_their_period_and_open_ones_never(
    services: Services,
) -> None:
    replayed_long_ago = add_dead_letter(services, 60, replayed_days_ago=31)
    replayed_lately = add_dead_letter(services, 60, replayed_days_ago=29)
    open_for_long = add_dead_letter(services, 400)

    result = prune.prune(services)

    assert ids_of(services, DeadLetter) == {replayed_lately, open_for_long}
    assert replayed_long_ago not in ids_of(services, DeadLetter)
    assert result.pruned["dead_letters"] == 1


def test_finished_runs_go_after_their_period_but_never_the_latest_of_an_org_or_list(
    services: Services,
) -> None:
    old_backfill = add_backfill_run(services, ORG, "finished", 100)
    failed_latest = add_backfill_run(services, ORG, "failed", 100)  # resumable: the latest
    only_run = add_backfill_run(services, "org-other", "finished", 100)
    young_backfill = add_backfill_run(services, "org-young", "finished", 80)
    add_backfill_run(services, "org-young", "finished", 1)
    old_list_runs = [add_list_run(services, "L1", "finished", 100 - n) for n in range(3)]
    running_since_long = add_list_run(services, "L2", "running", None)
    gone_latest = add_list_run(services, "L3", "gone", 200)

    result = prune.prune(services)

    backfills = ids_of(services, BackfillRun)
    assert old_backfill not in backfills
    assert {failed_latest, only_run, young_backfill} <= backfills
    assert ids_of(services, ListSyncRun) == {old_list_runs[-1], running_since_long, gone_latest}
    assert result.pruned["backfill_runs"] == 1
    assert result.pruned["list_runs"] == 2


def test_a_first_run_on_a_big_table_goes_in_bounded_chunks(services: Services) -> None:
    for _ in range(7):
        add_event(services, "applied", 31)
    for _ in range(5):
        add_dead_letter(services, 40, replayed_days_ago=31)

    # Out of time at once: one statement of each kind, none taking more than its chunk, and
    # the run says that more is left.
    first = prune.prune(services, rows_per_statement=3, time_budget=0)
    assert first.more
    assert (first.pruned["events"], first.pruned["dead_letters"]) == (3, 3)
    assert (len(ids_of(services, InboxEvent)), len(ids_of(services, DeadLetter))) == (4, 2)

    rest = prune.prune(services, rows_per_statement=3)
    assert not rest.more
    assert (rest.pruned["events"], rest.pruned["dead_letters"]) == (4, 2)
    assert ids_of(services, InboxEvent) == ids_of(services, DeadLetter) == set()


def test_periods_come_from_the_settings(services: Services) -> None:
    event = add_event(services, "applied", 3)
    services.settings = services.settings.model_copy(
        update={"retain_event_bodies_days": 2.0, "retain_applied_events_days": 4.0}
    )
    prune.prune(services)
    assert bodies(services) == {event: ""}
    services.settings = services.settings.model_copy(update={"retain_applied_events_days": 2.5})
    prune.prune(services)
    assert bodies(services) == {}


@pytest.fixture
def info_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger="app.retention"):
        yield caplog


def test_a_run_logs_one_line_with_its_counts_and_only_when_it_pruned_something(
    services: Services, info_logs: pytest.LogCaptureFixture
) -> None:
    prune.prune(services)
    assert [r for r in info_logs.records if r.name.startswith("app.retention")] == []
    add_event(services, "applied", 31)
    add_dead_letter(services, 40, replayed_days_ago=31)
    prune.prune(services)
    lines = [r for r in info_logs.records if r.name.startswith("app.retention")]
    assert len(lines) == 1
    assert lines[0].levelno == logging.INFO
    assert "events=1" in lines[0].getMessage()
    assert "dead_letters=1" in lines[0].getMessage()


def test_the_task_goes_on_at_once_while_a_first_run_has_rows_left(
    app: Flask, dispatcher: RecordingDispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(app)
    for _ in range(3):
        add_event(services, "applied", 31)
    monkeypatch.setattr(prune, "ROWS_PER_STATEMENT", 2)
    monkeypatch.setattr(prune, "TIME_BUDGET_SECONDS", 0.0)
    with app.app_context():
        retention_task.prune.run()
        assert dispatcher.names() == [RETENTION_PRUNE]  # 2 of 3 gone: on with the rest
        retention_task.prune.run()
        retention_task.prune.run()
    assert dispatcher.names() == [RETENTION_PRUNE]  # the last row went, then nothing was left
    assert ids_of(services, InboxEvent) == set()
