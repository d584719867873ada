"""Listing dead letters, newest first, as the admin API, the dashboard and the CLI show them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from app.store.models import DeadLetter

# ?state= of the API and the page: which dead letters, by whether they were replayed (True:
# waiting; None: either).
STATES: dict[str, bool | None] = {"": None, "waiting": True, "replayed": False}


def matching(
    org_id: str | None, reason: str | None = None, waiting: bool | None = None
) -> list[ColumnElement[bool]]:
    """The conditions of a filter: of one organization (or all), whose reason contains `reason`
    in any case (or any reason), waiting for a replay or already replayed (or both). The
    dashboard's list and a bulk replay share them, so a replay takes what the list showed."""
    conditions: list[ColumnElement[bool]] = []
    if org_id is not None:
        conditions.append(DeadLetter.org_id == org_id)
    if reason is not None:
        conditions.append(DeadLetter.reason.icontains(reason, autoescape=True))
    if waiting is not None:
        replayed = DeadLetter.replayed_at.is_not(None)
        conditions.append(~replayed if waiting else replayed)
    return conditions


def listing(
    session: Session,
    org_id: str | None,
    limit: int = 100,
    offset: int = 0,
    reason: str | None = None,
    waiting: bool | None = None,
) -> list[DeadLetter]:
    """The newest `limit` dead letters after the newest `offset`, of one organization or all
    (and of a reason, waiting or not: see `matching`)."""
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query.where(*matching(org_id, reason, waiting))))


def count(
    session: Session, org_id: str | None, reason: str | None = None, waiting: bool | None = None
) -> int:
    """How many dead letters a filter takes (see `matching`)."""
    query = select(func.count()).select_from(DeadLetter)
    return int(session.scalar(query.where(*matching(org_id, reason, waiting))) or 0)


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
