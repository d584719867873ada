"""The recent-activity feed: the newest notable things of one organization or of all, derived
from what is stored anyway (the minutes' counts, backfill and list runs, dead letters, a CRM's
outage), never from a row written per webhook."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from app.store.models import (
    ActivityMinute,
    BackfillRun,
    DeadLetter,
    DeliveryState,
    ListSyncRun,
)

LIMIT = 50
Q = TypeVar("Q", bound=Select[Any])
_PER_SOURCE = 20  # newest runs, letters of each kind read: the feed keeps LIMIT in all


@dataclass(frozen=True)
class Activity:
    """One line of the feed."""

    at: dt.datetime
    org_id: str
    kind: str  # webhooks | delivery | backfill | list | dead letter | outage
    text: str
    bad: bool = False


def recent(
    session: Session, now: dt.datetime, org_id: str | None = None, limit: int = LIMIT
) -> list[Activity]:
    """The newest `limit` things that happened, newest first."""
    found = [
        *_minutes(session, now, org_id),
        *_backfills(session, org_id),
        *_list_runs(session, org_id),
        *_dead_letters(session, org_id),
        *_outages(session, org_id),
    ]
    return sorted(found, key=lambda item: item.at, reverse=True)[:limit]


def _of(query: Q, column: Any, org_id: str | None) -> Q:
    return query if org_id is None else query.where(column == org_id)


def _minutes(session: Session, now: dt.datetime, org_id: str | None) -> list[Activity]:
    row = ActivityMinute
    query = (
        select(row)
        .where(row.minute >= now - dt.timedelta(hours=1),
               or_(row.webhooks > 0, row.batches > 0, row.paused > 0))
        .order_by(row.minute.desc())
        .limit(LIMIT)
    )  # fmt: skip
    items: list[Activity] = []
    for minute in session.scalars(_of(query, row.org_id, org_id)):
        # Placed at the minute's end (now, for the current one), among the runs of that minute.
        at = min(minute.minute + dt.timedelta(minutes=1), now)
        during = f" in the minute from {minute.minute:%H:%M} UTC"
        if minute.webhooks:
            text = f"{minute.webhooks:,} webhook{_s(minute.webhooks)} received{during}"
            items.append(Activity(at, minute.org_id, "webhooks", text))
        if minute.batches or minute.paused:
            items.append(_delivery(minute, at, during))
    return items


def _delivery(minute: ActivityMinute, at: dt.datetime, during: str) -> Activity:
    parts = []
    if minute.batches:
        parts.append(f"{minute.delivered:,} operation{_s(minute.delivered)} delivered in "
                     f"{minute.batches:,} batch{'es' if minute.batches != 1 else ''}")  # fmt: skip
    if minute.refused:
        parts.append(f"{minute.refused:,} refused")
    if minute.retried:
        parts.append(f"{minute.retried:,} to retry")
    if minute.paused:
        parts.append(f"{minute.paused:,} batch{'es' if minute.paused != 1 else ''} not taken "
                     "(CRM unreachable or throttling)")  # fmt: skip
    bad = bool(minute.refused or minute.paused)
    return Activity(at, minute.org_id, "delivery", " · ".join(parts) + during, bad)


def _backfills(session: Session, org_id: str | None) -> list[Activity]:
    query = select(BackfillRun).order_by(BackfillRun.id.desc()).limit(_PER_SOURCE)
    items: list[Activity] = []
    for run in session.scalars(_of(query, BackfillRun.org_id, org_id)):
        name = f"backfill {run.id}"
        items.append(Activity(run.started_at, run.org_id, "backfill", f"{name} started"))
        if run.finished_at is None:
            continue
        read = f"{run.customers:,} customers" + (
            f", {run.payments:,} payments" if run.with_payments else ""
        )
        if run.status == "finished":
            text, bad = f"{name} finished: {read}", False
        else:
            text, bad = f"{name} {run.status}: {run.last_error or 'no reason kept'}", True
        items.append(Activity(run.finished_at, run.org_id, "backfill", text, bad))
    return items


def _list_runs(session: Session, org_id: str | None) -> list[Activity]:
    query = select(ListSyncRun).order_by(ListSyncRun.id.desc()).limit(_PER_SOURCE)
    items: list[Activity] = []
    for run in session.scalars(_of(query, ListSyncRun.org_id, org_id)):
        name = f"list {run.list_id} resync"
        items.append(Activity(run.started_at, run.org_id, "list", f"{name} started"))
        if run.finished_at is None:
            continue
        if run.status == "finished":
            changes = f"{run.adds:,} added, {run.removes:,} removed"
            text = f"{name} finished: {run.members:,} members, {changes}"
            items.append(Activity(run.finished_at, run.org_id, "list", text))
        else:
            why = f": {run.last_error}" if run.last_error else ""
            items.append(
                Activity(run.finished_at, run.org_id, "list", f"{name} {run.status}{why}", True)
            )
    return items


def _dead_letters(session: Session, org_id: str | None) -> list[Activity]:
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(_PER_SOURCE)
    return [
        Activity(letter.created_at, letter.org_id, "dead letter",
                 f"dead letter {letter.id} ({letter.kind}): {letter.reason[:200]}", True)
        for letter in session.scalars(_of(query, DeadLetter.org_id, org_id))
    ]  # fmt: skip


def _outages(session: Session, org_id: str | None) -> list[Activity]:
    query = select(DeliveryState).where(DeliveryState.unreachable_since.is_not(None))
    items = []
    for state in session.scalars(_of(query, DeliveryState.org_id, org_id)):
        if state.unreachable_since is not None:
            what = (
                "CRM refused the credentials"
                if state.pause_reason == "credentials"
                else ("CRM unreachable")
            )
            text = f"{what}: {state.last_error or 'no answer'}; delivery paused"
            items.append(Activity(state.unreachable_since, state.org_id, "outage", text, True))
    return items


def _s(count: int) -> str:
    return "" if count == 1 else "s"
