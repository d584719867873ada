"""Dead letters: what could not be applied or delivered, kept for a person to see and replay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import inbox
from app.db import utcnow
from app.delivery import outbox
from app.metrics import DEAD_LETTERS
from app.models import DeadLetter
from app.services import Services
from app.task_names import DELIVERY_FLUSH, EVENTS_DRAIN


def record_event(session: Session, org_id: str, inbox_id: int, reason: str) -> DeadLetter:
    """An event that passed the signature but cannot be applied (e.g. wrong field types)."""
    DEAD_LETTERS.labels("event").inc()
    letter = DeadLetter(
        org_id=org_id,
        kind="event",
        reason=reason,
        detail={},
        inbox_id=inbox_id,
        created_at=utcnow(),
        replay_count=0,
    )
    session.add(letter)
    return letter


def record_batch(
    session: Session,
    org_id: str,
    batch_id: str,
    reason: str,
    keys: Sequence[tuple[str, str]],
    operations: list[dict[str, Any]],
    status: int | None = None,
    answer: str = "",
) -> DeadLetter:
    """A batch the destination refused for good, or gave up on after the last retry."""
    DEAD_LETTERS.labels("batch").inc()
    letter = DeadLetter(
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
    session.add(letter)
    return letter


def listing(session: Session, org_id: str | None, limit: int = 100) -> list[DeadLetter]:
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if org_id is not None:
        query = query.where(DeadLetter.org_id == org_id)
    return list(session.scalars(query))


@dataclass(frozen=True)
class Replay:
    """What the caller must kick once the transaction has committed."""

    org_id: str
    kind: str


def replay(session: Session, letter_id: int) -> Replay | None:
    """Put a dead letter's work back in line. A batch is rebuilt from the newest state, so a
    replay can never send a customer backwards."""
    letter = session.get(DeadLetter, letter_id, with_for_update=True)
    if letter is None:
        return None
    if letter.kind == "event" and letter.inbox_id is not None:
        inbox.mark(session, [letter.inbox_id], "pending")
    else:
        keys = [(str(kind), str(key)) for kind, key in letter.detail.get("keys", [])]
        outbox.requeue(session, letter.org_id, keys)
    letter.replayed_at = utcnow()
    letter.replay_count += 1
    return Replay(letter.org_id, letter.kind)


def replay_now(services: Services, letter_id: int) -> bool:
    """Replay and start the work at once; False if there is no such dead letter."""
    with services.db.transaction() as session:
        replayed = replay(session, letter_id)
    if replayed is None:
        return False
    if replayed.kind == "event":
        services.kicks.kick(EVENTS_DRAIN)
    else:
        services.kicks.kick(DELIVERY_FLUSH, replayed.org_id)
    return True


def as_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "orgId": letter.org_id,
        "kind": letter.kind,
        "reason": letter.reason,
        "detail": letter.detail,
        "inboxId": letter.inbox_id,
        "createdAt": letter.created_at.isoformat(),
        "replayedAt": letter.replayed_at.isoformat() if letter.replayed_at else None,
        "replayCount": letter.replay_count,
    }
