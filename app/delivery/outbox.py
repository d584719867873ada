"""The outbox: one row per entity whose newest state the CRM has not acknowledged.

A change bumps the row's `seq`. A batch leases rows and remembers the `seq` it carries; when the
CRM answers, the row stays pending only if it changed again meanwhile, so the next batch sends
the newer state. Claims for one destination are serialized by a row lock on its delivery state,
which also holds the shared rate limit: every worker on every machine takes its turn there.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    func,
    literal,
    null,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from app import dialect_sql
from app.db import UTCDateTime, utcnow
from app.models import DeliveryState, OutboxEntry


@dataclass(frozen=True)
class Change:
    kind: str  # contact | payment | list (key "<listId>:<customerId>")
    key: str
    customer_id: str
    source_at: dt.datetime | None
    request_id: str | None = None


def mark_changed(session: Session, org_id: str, changes: Sequence[Change]) -> None:
    """Make these entities pending (coalescing with any undelivered change)."""
    now = utcnow()
    unique = {(c.kind, c.key): c for c in changes}
    params = [
        {
            "org_id": org_id,
            "kind": c.kind,
            "key": c.key,
            "customer_id": c.customer_id,
            "pending": True,
            "seq": 1,
            "attempts": 0,
            "next_attempt_at": now,
            "changed_at": now,
            "source_at": c.source_at,
            "request_id": c.request_id,
        }
        for _, c in sorted(unique.items())  # one lock order for every writer
    ]
    if params:
        dialect = dialect_sql.name(session)
        session.execute(_outbox_upsert(dialect), dialect_sql.bulk_params(dialect, params))


_OUTBOX_COLUMNS = ("org_id", "kind", "key", "customer_id", "pending", "seq", "attempts",
                   "next_attempt_at", "changed_at", "source_at", "request_id")  # fmt: skip


@cache
def _outbox_upsert(dialect: str) -> Any:
    return _coalescing(dialect_sql.bulk_insert_for(dialect, OutboxEntry.__table__, _OUTBOX_COLUMNS))


def mark_selected(session: Session, org_id: str, kind: str, rows: Select[str, str]) -> int:
    """Make pending every entity that `rows` (selecting key, customer_id) yields: the same as
    mark_changed, for changes computed in SQL (a list diff of any size). Returns the count."""
    now = utcnow()
    keyed = rows.subquery()
    source = select(
        literal(org_id),
        literal(kind),
        keyed.c.key,
        keyed.c.customer_id,
        true(),
        literal(1),
        literal(0),
        literal(now, UTCDateTime()),
        literal(now, UTCDateTime()),
        null(),
    ).where(true())  # SQLite needs a WHERE to tell INSERT ... SELECT from ON CONFLICT
    columns = ["org_id", "kind", "key", "customer_id", "pending", "seq", "attempts",
               "next_attempt_at", "changed_at", "source_at"]  # fmt: skip
    stmt = dialect_sql.insert(session, OutboxEntry.__table__).from_select(columns, source)
    # SQLAlchemy reports -1 for INSERT ... SELECT unless asked to keep the driver's count.
    result = session.execute(_coalescing(stmt).execution_options(preserve_rowcount=True))
    return int(result.rowcount)  # type: ignore[attr-defined]


def _coalescing(stmt: Any) -> Any:
    """Upsert into the outbox: a row already pending keeps its place in line and its retry
    clock; a settled one restarts. Either way `seq` grows, so an answer in flight cannot settle
    this newer change."""
    new, old = stmt.excluded, OutboxEntry.__table__.c
    return stmt.on_conflict_do_update(
        index_elements=[old.org_id, old.kind, old.key],
        set_={
            "seq": old.seq + 1,
            "pending": True,
            "customer_id": new.customer_id,
            "source_at": new.source_at,
            "request_id": new.request_id,
            "changed_at": _unless_pending(old.changed_at, new.changed_at),
            "next_attempt_at": _unless_pending(old.next_attempt_at, new.next_attempt_at),
            "attempts": _unless_pending(old.attempts, 0),
        },
    )


def _unless_pending(kept: object, fresh: object) -> ColumnElement[object]:
    return case((OutboxEntry.__table__.c.pending, kept), else_=fresh)


@dataclass(frozen=True)
class ClaimedEntry:
    kind: str
    key: str
    customer_id: str
    attempts: int
    source_at: dt.datetime | None
    changed_at: dt.datetime
    request_id: str | None


@dataclass(frozen=True)
class Claimed:
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
    # One UPDATE ... FROM leases the whole batch, joined on the primary key (row by row
    # through the ORM, or matching a long IN list, cost more than sending the batch).
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


def _leased(org_id: str, batch_id: str) -> ColumnElement[bool]:
    return and_(OutboxEntry.org_id == org_id, OutboxEntry.lease_batch == batch_id)


def settle_delivered(session: Session, org_id: str, batch_id: str) -> None:
    """The CRM applied the batch: settle each entry unless it changed while in flight."""
    session.execute(
        update(OutboxEntry)
        .where(_leased(org_id, batch_id))
        .values(
            pending=OutboxEntry.seq != OutboxEntry.lease_seq,
            lease_batch=None,
            lease_seq=None,
            lease_until=None,
            attempts=0,
            last_error=None,
        )
    )
    session.execute(
        update(DeliveryState)
        .where(DeliveryState.org_id == org_id)
        .values(consecutive_failures=0, last_success_at=utcnow(), last_error=None)
    )


def settle_retry(
    session: Session, org_id: str, batch_id: str, delay: dt.timedelta, error: str
) -> None:
    """A transient failure: release the entries, due again after `delay`; pause the destination."""
    now = utcnow()
    session.execute(
        update(OutboxEntry)
        .where(_leased(org_id, batch_id))
        .values(
            lease_batch=None,
            lease_seq=None,
            lease_until=None,
            attempts=OutboxEntry.attempts + 1,
            next_attempt_at=now + delay,
            last_error=error,
        )
    )
    session.execute(
        update(DeliveryState)
        .where(DeliveryState.org_id == org_id)
        .values(
            paused_until=now + delay,
            consecutive_failures=DeliveryState.consecutive_failures + 1,
            last_error=error,
        )
    )


def settle_dead(session: Session, org_id: str, batch_id: str, error: str) -> None:
    """A permanent failure: the entries leave the queue until a replay or a newer change."""
    session.execute(
        update(OutboxEntry)
        .where(_leased(org_id, batch_id))
        .values(
            pending=OutboxEntry.seq != OutboxEntry.lease_seq,
            lease_batch=None,
            lease_seq=None,
            lease_until=None,
            attempts=0,
            last_error=error,
        )
    )


def requeue(session: Session, org_id: str, keys: Sequence[tuple[str, str]]) -> int:
    """Make entities pending again now (a replay): their newest state will be sent."""
    if not keys:
        return 0
    now = utcnow()
    result = session.execute(
        update(OutboxEntry)
        .where(
            OutboxEntry.org_id == org_id,
            tuple_(OutboxEntry.kind, OutboxEntry.key).in_(list(keys)),
        )
        .values(
            pending=True,
            seq=OutboxEntry.seq + 1,
            attempts=0,
            next_attempt_at=now,
            changed_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
