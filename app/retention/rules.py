"""What each kind of retention deletes: one bounded statement per kind, the same on PostgreSQL
and SQLite.

Every statement touches at most `rows` rows, picked by a sub-select with `FOR UPDATE SKIP
LOCKED` (PostgreSQL; SQLite's one writer needs none): a chunk is one short transaction, and a
row another transaction holds (a replay re-queuing an event) is left for the next run instead of
waited for. Conditions a partial index may match are literals, not parameters, so that a
prepared statement's generic plan can still use it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Select,
    Update,
    any_,
    delete,
    exists,
    func,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, aliased
from sqlalchemy.sql.expression import ColumnClause

from app.core.config import Settings
from app.store.models import (
    ActivityMinute,
    BackfillRun,
    CustomerList,
    DeadLetter,
    InboxEvent,
    ListSyncRun,
)

# Events whose work is done: applied, or ignored (an event type we do not handle, an
# organization not connected). `pending` ones are still to apply and `failed` ones wait for a
# person (their dead letter); neither is ever pruned.
DONE: tuple[ColumnClause[Any], ...] = (literal_column("'applied'"), literal_column("'ignored'"))
RUNNING: ColumnClause[Any] = literal_column("'running'")
CLEARED: ColumnClause[Any] = literal_column("''")


@dataclass(frozen=True)
class Rule:
    """One kind of retention: how many days it keeps (from the settings), and the statement
    that prunes up to `rows` rows older than the cutoff."""

    kind: str
    days: Callable[[Settings], float]
    statement: Callable[[str, dt.datetime, int], Update | Delete]


def _picked(
    dialect: str, key: InstrumentedAttribute[int], chunk: Select[int]
) -> ColumnElement[bool]:
    """`key` is one of the chunk's ids. On PostgreSQL as `= ANY(ARRAY(chunk))`: the chunk runs
    once and its rows are found by primary key, where `IN (chunk)` is planned as a hash join
    that reads the whole table for every chunk. SQLite looks an `IN` up by key anyway."""
    if dialect == "postgresql":
        return key == any_(func.array(chunk.scalar_subquery()))
    return key.in_(chunk)


def _event_done_before(event: type[InboxEvent], cutoff: dt.datetime) -> list[ColumnElement[bool]]:
    """Done events received before the cutoff that no dead letter points at.

    A dead letter keeps its event whole, body included, for as long as the letter exists: a
    replay (even a second one) reads that body again. Age counts from arrival, which is when
    the customer data came in (an ignored event is never processed at all).
    """
    # One hashed NOT IN over the few events with a letter: SQLite would scan every dead letter
    # again for each event as a correlated NOT EXISTS.
    lettered = select(DeadLetter.inbox_id).where(DeadLetter.inbox_id.is_not(None))
    return [event.status.in_(DONE), event.received_at < cutoff, event.id.not_in(lettered)]


def clear_event_bodies(dialect: str, cutoff: dt.datetime, rows: int) -> Update:
    """Empty the bodies (customer data) of done events. The row stays, and its body's digest
    with it, so LOKE sending that body again is still recognised as a duplicate."""
    event = aliased(InboxEvent)
    chunk = (
        select(event.id)
        .where(*_event_done_before(event, cutoff), event.body != CLEARED)
        .limit(rows)
        .with_for_update(skip_locked=True)
    )
    return update(InboxEvent).where(_picked(dialect, InboxEvent.id, chunk)).values(body="")


def delete_events(dialect: str, cutoff: dt.datetime, rows: int) -> Delete:
    """Delete done events. The digest goes too: LOKE retrying that body afterwards would store
    it again and apply it, which changes nothing (applying an old state is a no-op); and LOKE
    retries for minutes, not for the weeks this keeps them."""
    event = aliased(InboxEvent)
    chunk = (
        select(event.id)
        .where(*_event_done_before(event, cutoff))
        .limit(rows)
        .with_for_update(skip_locked=True)
    )
    return delete(InboxEvent).where(_picked(dialect, InboxEvent.id, chunk))


def delete_replayed_dead_letters(dialect: str, cutoff: dt.datetime, rows: int) -> Delete:
    """Delete dead letters replayed before the cutoff; those never replayed stay for ever."""
    letter = aliased(DeadLetter)
    chunk = (
        select(letter.id)
        .where(letter.replayed_at < cutoff)
        .limit(rows)
        .with_for_update(skip_locked=True)
    )
    return delete(DeadLetter).where(_picked(dialect, DeadLetter.id, chunk))


def delete_backfill_runs(dialect: str, cutoff: dt.datetime, rows: int) -> Delete:
    """Delete backfill runs that finished (or failed) before the cutoff, except each
    organization's latest: its status is shown, and a failed one is resumed from it."""
    run, newer = aliased(BackfillRun), aliased(BackfillRun)
    superseded = exists().where(newer.org_id == run.org_id, newer.id > run.id)
    chunk = (
        select(run.id)
        .where(run.status != RUNNING, run.finished_at < cutoff, superseded)
        .limit(rows)
        .with_for_update(skip_locked=True)
    )
    return delete(BackfillRun).where(_picked(dialect, BackfillRun.id, chunk))


def delete_list_runs(dialect: str, cutoff: dt.datetime, rows: int) -> Delete:
    """Delete list resyncs that ended before the cutoff, except each list's latest (its
    summary is what the status shows). A staging table or page rows left by a deleted run are
    dropped by the lists' sweep, which takes a run it cannot find for one that is over."""
    run, newer = aliased(ListSyncRun), aliased(ListSyncRun)
    superseded = exists().where(
        newer.org_id == run.org_id, newer.list_id == run.list_id, newer.id > run.id
    )
    shown = select(CustomerList.last_run_id).where(CustomerList.last_run_id.is_not(None))
    chunk = (
        select(run.id)
        .where(run.status != RUNNING, run.finished_at < cutoff, superseded, run.id.not_in(shown))
        .limit(rows)
        .with_for_update(skip_locked=True)
    )
    return delete(ListSyncRun).where(_picked(dialect, ListSyncRun.id, chunk))


# The dashboard charts the last hour; two days leave yesterday to look back at, in a few
# thousand rows per organization.
ACTIVITY_MINUTES_DAYS = 2.0


def delete_activity_minutes(dialect: str, cutoff: dt.datetime, rows: int) -> Delete:
    """Delete the per-minute activity (counts and samples) of minutes before the cutoff."""
    minute = aliased(ActivityMinute)
    chunk = (
        select(minute.org_id, minute.minute)
        .where(minute.minute < cutoff)
        .limit(rows)
        .with_for_update(skip_locked=True)
    )
    return delete(ActivityMinute).where(
        tuple_(ActivityMinute.org_id, ActivityMinute.minute).in_(chunk)
    )


# In this order: a replayed dead letter that goes releases its event for the events' rule in
# the same run, and events old enough to delete are deleted before their bodies are cleared.
RULES = (
    Rule("dead_letters", lambda s: s.retain_replayed_dead_letters_days,
         delete_replayed_dead_letters),
    Rule("events", lambda s: s.retain_applied_events_days, delete_events),
    Rule("event_bodies", lambda s: s.retain_event_bodies_days, clear_event_bodies),
    Rule("backfill_runs", lambda s: s.retain_finished_runs_days, delete_backfill_runs),
    Rule("list_runs", lambda s: s.retain_finished_runs_days, delete_list_runs),
    Rule("activity_minutes", lambda s: ACTIVITY_MINUTES_DAYS, delete_activity_minutes),
)  # fmt: skip
