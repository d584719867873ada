"""The webhook inbox: every accepted body is stored here before LOKE gets its 2xx."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from enum import StrEnum

from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session

from app import dialect_sql
from app.db import utcnow
from app.events import HANDLED_EVENTS
from app.models import InboxEvent


class Stored(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


def store(
    connection: Connection, org_id: str, event_type: str, body: bytes, request_id: str
) -> Stored:
    """Insert the raw event once per (org, body); one statement, so it commits on its own."""
    handled = event_type in HANDLED_EVENTS
    table = InboxEvent.__table__
    stmt = (
        dialect_sql.insert(connection, table)
        .values(
            org_id=org_id,
            body_sha256=hashlib.sha256(body).hexdigest(),
            event_type=event_type[:64],
            body=body.decode(),
            status="pending" if handled else "ignored",
            received_at=utcnow(),
            request_id=request_id,
        )
        .on_conflict_do_nothing(index_elements=[table.c.org_id, table.c.body_sha256])
        .returning(table.c.id)
    )
    inserted = connection.execute(stmt).scalar()
    if inserted is None:
        return Stored.DUPLICATE
    return Stored.ACCEPTED if handled else Stored.IGNORED


def claim_pending(
    session: Session, limit: int, ids: Sequence[int] | None = None
) -> list[InboxEvent]:
    """Lock a batch of pending events; other workers skip them and take the next ones."""
    query = select(InboxEvent).where(InboxEvent.status == "pending")
    if ids is not None:
        query = query.where(InboxEvent.id.in_(list(ids)))
    return list(
        session.scalars(
            query.order_by(InboxEvent.id).limit(limit).with_for_update(skip_locked=True)
        )
    )


def oldest_pending_age_seconds(session: Session) -> float | None:
    oldest = session.scalar(
        select(func.min(InboxEvent.received_at)).where(InboxEvent.status == "pending")
    )
    return None if oldest is None else (utcnow() - oldest).total_seconds()


def mark(session: Session, ids: Sequence[int], status: str, error: str | None = None) -> None:
    if ids:
        session.execute(
            update(InboxEvent)
            .where(InboxEvent.id.in_(list(ids)))
            .values(
                status=status,
                processed_at=None if status == "pending" else utcnow(),
                error=error,
            )
            .execution_options(synchronize_session=False)
        )
