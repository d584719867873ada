"""Claiming a batch of the outbox: the rows it carries are leased, with the `seq` each carried.

Claims for one destination are serialized by a row lock on its delivery state, which also holds
the shared rate limit: every worker on every machine takes its turn there. A customer already in
an unanswered batch is left for the next one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from app.store import dialect_sql
from app.store.db import utcnow
from app.store.models import DeliveryState, OutboxEntry


@dataclass(frozen=True)
class ClaimedEntry:
    """One outbox entry leased for a batch, with what sending and metrics need."""

    kind: str
    key: str
    customer_id: str
    attempts: int
    source_at: dt.datetime | None
    changed_at: dt.datetime
    request_id: str | None


@dataclass(frozen=True)
class Claimed:
    """A batch claimed: its id and its entries."""

    batch_id: str
    entries: list[ClaimedEntry]


@dataclass(frozen=True)
class Wait:
    """Nothing may be sent before `until` (rate limit or a paused destination)."""

    until: dt.datetime


@dataclass(frozen=True)
class Idle:
    """Nothing claimable now; `next_due` is when a retrying entry becomes due, if any."""

    next_due: dt.datetime | None


def take_flusher(session: Session, org_id: str, token: str, lease: dt.timedelta) -> bool:
    """Become the destination's one flusher (or renew it); False if a live one exists."""
    state = _lock_state(session, org_id)
    now = utcnow()
    live = state.flusher_until is not None and state.flusher_until > now
    if live and state.flusher != token:
        return False
    state.flusher, state.flusher_until = token, now + lease
    return True


def release_flusher(session: Session, org_id: str, token: str) -> None:
    """Give up the destination's flusher slot, if this token holds it."""
    session.execute(
        update(DeliveryState)
        .where(DeliveryState.org_id == org_id, DeliveryState.flusher == token)
        .values(flusher=None, flusher_until=None)
    )


def has_claimable(session: Session, org_id: str) -> bool:
    """Work a flusher could take right now (ignoring the rate limit)."""
    now = utcnow()
    return (
        session.scalar(
            select(OutboxEntry.key)
            .where(
                OutboxEntry.org_id == org_id,
                OutboxEntry.pending,
                OutboxEntry.next_attempt_at <= now,
                or_(OutboxEntry.lease_until.is_(None), OutboxEntry.lease_until <= now),
            )
            .limit(1)
        )
        is not None
    )


def claim_batch(
    session: Session,
    org_id: str,
    batch_size: int,
    requests_per_second: float,
    lease: dt.timedelta,
    flusher: str | None = None,
) -> Claimed | Wait | Idle:
    """Lease up to `batch_size` pending entries of customers not already in flight (renewing
    the caller's flusher lease on the way)."""
    state = _lock_state(session, org_id)
    now = utcnow()  # after the lock: a claim that waited for it must not judge by an old clock
    if flusher is not None and state.flusher == flusher:
        state.flusher_until = now + lease
    if state.paused_until is not None and state.paused_until > now:
        return Wait(state.paused_until)
    if state.tat > now:
        return Wait(state.tat)

    in_flight = (
        select(OutboxEntry.customer_id)
        .where(
            OutboxEntry.org_id == org_id,
            OutboxEntry.lease_batch.is_not(None),  # the partial index of leased rows
            OutboxEntry.lease_until > now,
        )
        .scalar_subquery()
    )
    batch = (
        select(OutboxEntry.kind, OutboxEntry.key)
        .where(
            OutboxEntry.org_id == org_id,
            OutboxEntry.pending,
            OutboxEntry.next_attempt_at <= now,
            OutboxEntry.customer_id.not_in(in_flight),
        )
        .order_by(OutboxEntry.changed_at)
        .limit(batch_size)
        .subquery()
    )
    batch_id = uuid.uuid4().hex
    # One UPDATE ... FROM leases the whole batch, joined on the primary key: row by row
    # through the ORM, or matching a long IN list, would cost more than sending the batch.
    leased = session.execute(
        update(OutboxEntry)
        .where(
            OutboxEntry.org_id == org_id,
            OutboxEntry.kind == batch.c.kind,
            OutboxEntry.key == batch.c.key,
        )
        .values(lease_batch=batch_id, lease_seq=OutboxEntry.seq, lease_until=now + lease)
        .returning(
            OutboxEntry.kind,
            OutboxEntry.key,
            OutboxEntry.customer_id,
            OutboxEntry.attempts,
            OutboxEntry.source_at,
            OutboxEntry.changed_at,
            OutboxEntry.request_id,
        )
        .execution_options(synchronize_session=False)
    )
    entries = [ClaimedEntry(*row) for row in leased]
    if not entries:
        next_due = session.scalar(
            select(func.min(OutboxEntry.next_attempt_at)).where(
                OutboxEntry.org_id == org_id, OutboxEntry.pending
            )
        )
        return Idle(next_due)
    state.tat = max(state.tat, now) + dt.timedelta(seconds=1 / requests_per_second)
    return Claimed(batch_id, entries)


def _lock_state(session: Session, org_id: str) -> DeliveryState:
    session.execute(
        dialect_sql.insert(session, DeliveryState.__table__)
        .values(org_id=org_id, tat=utcnow(), consecutive_failures=0)
        .on_conflict_do_nothing()
    )
    return session.scalars(
        select(DeliveryState).where(DeliveryState.org_id == org_id).with_for_update()
    ).one()
