"""The outbox: one row per entity whose newest state the CRM has not acknowledged.

A change bumps the row's `seq`, coalescing with any change not delivered yet; a batch remembers
the `seq` it carries (`claims`), so an answer for an older state never clears a newer change
(`settle`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, case, literal, null, select, true, tuple_, update
from sqlalchemy.orm import Session

from app.store import dialect_sql
from app.store.db import UTCDateTime, utcnow
from app.store.models import OutboxEntry


@dataclass(frozen=True)
class Change:
    """An entity that changed, as the outbox keys it, with where the change came from."""

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


def requeue(session: Session, org_id: str, keys: Sequence[tuple[str, str]]) -> int:
    """Make entities pending again now (a replay): their newest state will be sent."""
    if not keys:
        return 0
    now = utcnow()
    wanted = tuple_(OutboxEntry.kind, OutboxEntry.key).in_(list(keys))
    # Locked in key order first, as applying events locks them: the two never deadlock.
    session.execute(
        select(OutboxEntry.kind)
        .where(OutboxEntry.org_id == org_id, wanted)
        .order_by(OutboxEntry.kind, OutboxEntry.key)
        .with_for_update()
    ).all()
    result = session.execute(
        update(OutboxEntry)
        .where(OutboxEntry.org_id == org_id, wanted)
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
