"""Listing dead letters, newest first, as the admin API, the dashboard and the CLI show them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.store.models import DeadLetter


def listing(
    session: Session, org_id: str | None, limit: int = 100, offset: int = 0
) -> list[DeadLetter]:
    """The newest `limit` dead letters after the newest `offset`, of one organization or all."""
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit).offset(offset)
    if org_id is not None:
        query = query.where(DeadLetter.org_id == org_id)
    return list(session.scalars(query))


def as_json(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as the admin API shows it."""
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
