"""The webhook inbox: every accepted body is stored here before LOKE gets its 2xx."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from enum import StrEnum

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.orm import Session

from app.core.metrics import DEAD_LETTERS
from app.loke.records import HANDLED_EVENTS
from app.store.db import Database, utcnow
from app.store.models import DeadLetter, InboxEvent

# Named in LOKE's documentation; not handled (yet), but counted by name rather than as "other".
ORDER_EVENTS = frozenset({"order.created", "order.accepted", "order.rejected", "order.completed"})


def event_label(event_type: str) -> str:
    """The metric label of an event type: it comes from outside, so only known ones are kept."""
    return event_type if event_type in HANDLED_EVENTS | ORDER_EVENTS else "other"


class Stored(StrEnum):
    """What storing a webhook did: the `status` of the receiver's 202."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


# The receiver's one statement, written out for each driver's parameter style: it runs on every
# webhook, and building and compiling it through SQLAlchemy cost more than the insert itself.
_STORE_SQL = {
    "postgresql": (
        "INSERT INTO inbox (org_id, body_sha256, event_type, body, status, received_at, "
        "request_id) VALUES (%(org_id)s, %(sha)s, %(event_type)s, %(body)s, %(status)s, "
        "%(received_at)s, %(request_id)s) ON CONFLICT (org_id, body_sha256) DO NOTHING "
        "RETURNING id"
    ),
    "sqlite": (
        "INSERT INTO inbox (org_id, body_sha256, event_type, body, status, received_at, "
        "request_id) VALUES (:org_id, :sha, :event_type, :body, :status, :received_at, "
        ":request_id) ON CONFLICT (org_id, body_sha256) DO NOTHING RETURNING id"
    ),
}


EVENT_TYPE_MAX = REQUEST_ID_MAX = 64  # the columns' lengths (PostgreSQL enforces them)


def storable(text: str, limit: int) -> str:
    """`text` as every store can hold it: no NUL (PostgreSQL refuses one), no lone surrogate
    (no driver can encode one), at most `limit` characters. For labels that come from outside
    and only describe an event: the body is stored exactly as it came."""
    cleaned = text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return cleaned[:limit]


def store(db: Database, org_id: str, event_type: str, body: bytes, request_id: str) -> Stored:
    """Insert the raw event once per (org, body); one statement, so it commits on its own.
    Raises DatabaseUnavailable."""
    handled = event_type in HANDLED_EVENTS
    dialect = db.dialect
    received_at = utcnow()
    params = {
        "org_id": org_id,
        "sha": hashlib.sha256(body).hexdigest(),
        "event_type": storable(event_type, EVENT_TYPE_MAX),
        "body": body.decode(),
        "status": "pending" if handled else "ignored",
        # The same representation UTCDateTime gives SQLite (naive UTC text).
        "received_at": received_at if dialect == "postgresql" else received_at.replace(tzinfo=None),
        "request_id": storable(request_id, REQUEST_ID_MAX),
    }
    inserted = db.execute_one(_STORE_SQL, params)
    if inserted is None:
        return Stored.DUPLICATE
    return Stored.ACCEPTED if handled else Stored.IGNORED


def claim_pending(
    session: Session, limit: int, ids: Sequence[int] | None = None
) -> list[InboxEvent]:
    """Lock a batch of pending events; other workers skip them and take the next ones."""
    # A literal, not a parameter, so PostgreSQL can use the partial index on pending rows.
    query = select(InboxEvent).where(InboxEvent.status == literal_column("'pending'"))
    if ids is not None:
        query = query.where(InboxEvent.id.in_(list(ids)))
    return list(
        session.scalars(
            query.order_by(InboxEvent.id).limit(limit).with_for_update(skip_locked=True)
        )
    )


def oldest_pending_age_seconds(session: Session) -> float | None:
    """How long the oldest pending event has waited, or None when none is pending."""
    oldest = session.scalar(
        select(func.min(InboxEvent.received_at)).where(InboxEvent.status == "pending")
    )
    return None if oldest is None else (utcnow() - oldest).total_seconds()


def mark(session: Session, ids: Sequence[int], status: str, error: str | None = None) -> None:
    """Set the status of these events (`pending` again for a replay)."""
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


def fail(session: Session, event: InboxEvent, reason: str) -> None:
    """An event that passed the signature but cannot be applied (wrong field types, data the
    store refuses): marked failed, and kept as a dead letter for a person to see and replay."""
    mark(session, [event.id], "failed", reason)
    DEAD_LETTERS.labels("event").inc()
    session.add(
        DeadLetter(
            org_id=event.org_id,
            kind="event",
            reason=reason,
            detail={},
            inbox_id=event.id,
            created_at=utcnow(),
            replay_count=0,
        )
    )
