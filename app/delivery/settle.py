"""Settling a claimed batch by the CRM's answer: each entry delivered, retried later or dead;
or the whole batch released while the CRM is unreachable.

An entry that changed while its batch was in flight stays pending, so the next batch sends its
newer state. The batch's rows are locked in key order first, as applying events locks them, so
the two never deadlock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, tuple_, update
from sqlalchemy.orm import Session

from app.core.metrics import DEAD_LETTERS
from app.delivery.claims import lock_state
from app.store.db import utcnow
from app.store.models import DeadLetter, DeliveryState, OutboxEntry

Key = tuple[str, str]  # (kind, key) of an outbox entry


def _leased(org_id: str, lease: str) -> ColumnElement[bool]:
    return and_(OutboxEntry.org_id == org_id, OutboxEntry.lease_batch == lease)


def _lock(session: Session, org_id: str, lease: str) -> None:
    session.execute(
        select(OutboxEntry.kind)
        .where(_leased(org_id, lease))
        .order_by(OutboxEntry.kind, OutboxEntry.key)
        .with_for_update()
    ).all()


def _only(keys: Sequence[Key]) -> ColumnElement[bool]:
    return tuple_(OutboxEntry.kind, OutboxEntry.key).in_(list(keys))


def renew(session: Session, org_id: str, lease: str, until: dt.datetime) -> int:
    """The batch is still on the wire: its customers stay its own until `until`. Returns how
    many entries it still holds."""
    _lock(session, org_id, lease)
    result = session.execute(
        update(OutboxEntry).where(_leased(org_id, lease)).values(lease_until=until)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def answered(
    session: Session,
    org_id: str,
    lease: str,
    retry: Sequence[Key] = (),
    retry_delay: dt.timedelta = dt.timedelta(0),
    dead: Sequence[Key] = (),
    error: str | None = None,
) -> None:
    """The CRM answered the batch: entries in `retry` are due again after `retry_delay`, those
    in `dead` leave the queue (until a replay or a newer change), the rest are delivered."""
    _lock(session, org_id, lease)
    now = utcnow()
    if retry:
        session.execute(
            update(OutboxEntry)
            .where(_leased(org_id, lease), _only(retry))
            .values(
                lease_batch=None,
                lease_seq=None,
                lease_until=None,
                attempts=OutboxEntry.attempts + 1,
                next_attempt_at=now + retry_delay,
                last_error=error,
            )
        )
    if dead:
        _settle(session, org_id, lease, error, _only(dead))
    _settle(session, org_id, lease, None)
    _reachable(session, org_id, now)


def _reachable(session: Session, org_id: str, now: dt.datetime) -> None:
    """The CRM answered: no pause, no failure, and a fresh `last_success_at`. The row is
    written only when that changes something (or its last success is a second old): every
    claim of the organization holds this row's lock, and an UPDATE whose condition the row
    does not meet never waits for it."""
    session.execute(
        update(DeliveryState)
        .where(
            DeliveryState.org_id == org_id,
            or_(
                DeliveryState.consecutive_failures > 0,
                DeliveryState.paused_until.is_not(None),
                DeliveryState.unreachable_since.is_not(None),
                DeliveryState.last_error.is_not(None),
                DeliveryState.pause_reason.is_not(None),
                DeliveryState.last_success_at.is_(None),
                DeliveryState.last_success_at < now - dt.timedelta(seconds=1),
            ),
        )
        .values(
            consecutive_failures=0,
            paused_until=None,
            unreachable_since=None,
            pause_reason=None,
            last_success_at=now,
            last_error=None,
        )
    )


def unreachable(
    session: Session,
    org_id: str,
    lease: str,
    pause: dt.timedelta,
    error: str,
    reason: str = "unreachable",
) -> dt.datetime:
    """The CRM did not take the batch (5xx, timeout, refused connection; `reason`
    "credentials" when it refused them): its entries are released, spending none of their
    attempts, and the destination pauses for `pause`. Returns the time of the next try."""
    _lock(session, org_id, lease)
    now = utcnow()
    session.execute(
        update(OutboxEntry)
        .where(_leased(org_id, lease))
        .values(lease_batch=None, lease_seq=None, lease_until=None, last_error=error)
    )
    state = lock_state(session, org_id)
    state.consecutive_failures += 1
    state.unreachable_since = state.unreachable_since or now
    state.paused_until = max(state.paused_until or now, now + pause)
    state.last_error = error
    state.pause_reason = reason
    return state.paused_until


def throttled(session: Session, org_id: str, lease: str, error: str) -> None:
    """The CRM's account was over its limit (429): the entries are released as they were (the
    account, not the organization, waits)."""
    _lock(session, org_id, lease)
    session.execute(
        update(OutboxEntry)
        .where(_leased(org_id, lease))
        .values(lease_batch=None, lease_seq=None, lease_until=None, last_error=error)
    )
    lock_state(session, org_id).last_error = error


def _settle(
    session: Session,
    org_id: str,
    lease: str,
    error: str | None,
    only: ColumnElement[bool] | None = None,
) -> None:
    """The entries are done with: each stays pending only if it changed in flight."""
    condition = _leased(org_id, lease) if only is None else and_(_leased(org_id, lease), only)
    session.execute(
        update(OutboxEntry)
        .where(condition)
        .values(
            pending=OutboxEntry.seq != OutboxEntry.lease_seq,
            lease_batch=None,
            lease_seq=None,
            lease_until=None,
            attempts=0,
            last_error=error,
        )
    )


def dead_letter(
    session: Session,
    org_id: str,
    kind: str,
    reason: str,
    keys: Sequence[Key],
    operations: list[dict[str, Any]],
    batch_id: str,
    status: int | None = None,
    answer: str = "",
) -> None:
    """Keep what the CRM refused (a whole batch, or one operation of it), with its answer, for
    a person to see and replay."""
    DEAD_LETTERS.labels(kind).inc()
    session.add(
        DeadLetter(
            org_id=org_id,
            kind=kind,
            reason=reason,
            detail={
                "batchId": batch_id,
                "status": status,
                "answer": answer,
                "keys": [list(k) for k in keys],
                "operations": operations,
            },
            created_at=utcnow(),
            replay_count=0,
        )
    )


def refused(
    session: Session,
    org_id: str,
    lease: str,
    batch_id: str,
    keys: Sequence[Key],
    operations: list[dict[str, Any]],
    reason: str,
    status: int | None,
    answer: str,
) -> None:
    """The CRM refused the whole batch for good (a 4xx): its entries leave the queue and the
    batch is one dead letter."""
    _lock(session, org_id, lease)
    _settle(session, org_id, lease, reason)
    dead_letter(session, org_id, "batch", reason, keys, operations, batch_id, status, answer)
    state = lock_state(session, org_id)
    state.consecutive_failures = 0
    state.paused_until = state.unreachable_since = state.pause_reason = None
