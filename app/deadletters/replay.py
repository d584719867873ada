"""Replaying a dead letter: its work goes back in line, rebuilt from the newest state.

Dead letters are written where the failure happens: an event that cannot be applied by the
inbox (`ingest.inbox.fail`), a batch the CRM refused by delivery (`delivery.settle.dead`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.core.services import Services
from app.core.task_names import DELIVERY_FLUSH, EVENTS_DRAIN
from app.delivery import outbox
from app.ingest import inbox
from app.store.db import utcnow
from app.store.models import DeadLetter


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
