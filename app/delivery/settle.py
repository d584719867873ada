"""Settling a claimed batch by the CRM's answer: delivered, retried later, or a dead letter.

An entry that changed while its batch was in flight stays pending, so the next batch sends its
newer state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, update
from sqlalchemy.orm import Session

from app.core.metrics import DEAD_LETTERS
from app.store.db import utcnow
from app.store.models import DeadLetter, DeliveryState, OutboxEntry


def _leased(org_id: str, batch_id: str) -> ColumnElement[bool]:
    return and_(OutboxEntry.org_id == org_id, OutboxEntry.lease_batch == batch_id)


def _settle(session: Session, org_id: str, batch_id: str, error: str | None) -> None:
    """The batch's entries are done with: each stays pending only if it changed in flight."""
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


def delivered(session: Session, org_id: str, batch_id: str) -> None:
    """The CRM applied the batch: settle each entry unless it changed while in flight."""
    _settle(session, org_id, batch_id, None)
    session.execute(
        update(DeliveryState)
        .where(DeliveryState.org_id == org_id)
        .values(consecutive_failures=0, last_success_at=utcnow(), last_error=None)
    )


def retry(session: Session, org_id: str, batch_id: str, delay: dt.timedelta, error: str) -> None:
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


def dead(
    session: Session,
    org_id: str,
    batch_id: str,
    reason: str,
    keys: Sequence[tuple[str, str]],
    operations: list[dict[str, Any]],
    status: int | None = None,
    answer: str = "",
) -> None:
    """A batch refused for good, or given up on after its last retry: the entries leave the
    queue until a replay or a newer change, and the batch is kept as a dead letter (with the
    CRM's answer) for a person to see and replay."""
    _settle(session, org_id, batch_id, reason)
    DEAD_LETTERS.labels("batch").inc()
    session.add(
        DeadLetter(
            org_id=org_id,
            kind="batch",
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
