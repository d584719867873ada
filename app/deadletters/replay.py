"""Replaying dead letters: their work goes back in line, rebuilt from the newest state.

Dead letters are written where the failure happens: an event that cannot be applied by the
inbox (`ingest.inbox.fail`), a batch or an operation the CRM refused by delivery
(`delivery.settle`). A replay can never send a customer backwards: what is sent again is
the newest state, not what failed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.services import Services
from app.core.task_names import DELIVERY_FLUSH, EVENTS_DRAIN
from app.core.validation import ID_CHARS, NO_NUL
from app.deadletters.listing import matching
from app.delivery import outbox
from app.ingest import inbox
from app.store.db import utcnow
from app.store.models import DeadLetter

REPLAYED_AT_A_TIME = 500  # dead letters a transaction of a bulk replay takes
OrgId = Annotated[str, StringConstraints(min_length=1, max_length=ID_CHARS), NO_NUL]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=255), NO_NUL]


class ReplayFilter(BaseModel):
    """Which dead letters a bulk replay takes: of one organization or all, and those whose
    reason contains `reason` (any case) or all."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    org_id: OrgId | None = Field(None, alias="orgId")
    reason: Reason | None = None


@dataclass(frozen=True)
class Replay:
    """What the caller must kick once the transaction has committed."""

    org_id: str
    kind: str


def replay(session: Session, letter_id: int) -> Replay | None:
    """Put a dead letter's work back in line."""
    letter = session.get(DeadLetter, letter_id, with_for_update=True)
    if letter is None:
        return None
    _requeue(session, [letter])
    return Replay(letter.org_id, letter.kind)


def replay_now(services: Services, letter_id: int) -> bool:
    """Replay and start the work at once; False if there is no such dead letter."""
    with services.db.transaction() as session:
        replayed = replay(session, letter_id)
    if replayed is None:
        return False
    _kick(services, [replayed])
    return True


def replay_matching(services: Services, which: ReplayFilter) -> int:
    """Replay every dead letter not replayed yet that `which` takes; returns how many. A
    transaction per few hundred letters."""
    count = 0
    replays: set[Replay] = set()
    after = 0
    while True:
        with services.db.transaction() as session:
            query = (
                select(DeadLetter)
                .where(DeadLetter.id > after, *matching(which.org_id, which.reason, waiting=True))
                .order_by(DeadLetter.id)
                .limit(REPLAYED_AT_A_TIME)
                .with_for_update(skip_locked=True)
            )
            letters = list(session.scalars(query))
            if not letters:
                break
            _requeue(session, letters)
            after = letters[-1].id
        count += len(letters)
        replays |= {Replay(letter.org_id, letter.kind) for letter in letters}
    _kick(services, replays)
    return count


def _requeue(session: Session, letters: list[DeadLetter]) -> None:
    """The letters' events back in the inbox, their entities back in the outbox."""
    events = [letter.inbox_id for letter in letters if letter.inbox_id is not None]
    inbox.mark(session, events, "pending")
    keys: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for letter in letters:
        if letter.inbox_id is None:
            keys[letter.org_id] += [(str(k), str(v)) for k, v in letter.detail.get("keys", [])]
    for org, org_keys in keys.items():
        outbox.requeue(session, org, sorted(set(org_keys)))
    now = utcnow()
    for letter in letters:
        letter.replayed_at = now
        letter.replay_count += 1


def _kick(services: Services, replays: set[Replay] | list[Replay]) -> None:
    if any(r.kind == "event" for r in replays):
        services.kicks.kick(EVENTS_DRAIN)
    for org_id in sorted({r.org_id for r in replays if r.kind != "event"}):
        services.kicks.kick(DELIVERY_FLUSH, org_id)
