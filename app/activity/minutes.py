"""Counting into an organization's minute: one UPSERT per applied or settled batch.

Every process and machine adds to the same rows, so the counts are the service's, not one
process's. A batch counts once, at the end of its own transaction: the row is a hot spot shared
by the organization's concurrent batches, and its lock is held only until that commit.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from app.store import dialect_sql
from app.store.db import utcnow
from app.store.models import ActivityMinute

COUNTED = ("webhooks", "delivered", "batches", "refused", "retried", "paused")
SAMPLED = ("backlog", "lag_seconds")


def minute_of(when: dt.datetime) -> dt.datetime:
    """The start of the minute `when` falls in."""
    return when.astimezone(dt.UTC).replace(second=0, microsecond=0)


def add(session: Session, org_id: str, minute: dt.datetime, **counts: int) -> None:
    """Add `counts` (columns of COUNTED) to the organization's minute."""
    if not any(counts.values()):
        return
    unknown = set(counts) - set(COUNTED)
    if unknown:
        raise ValueError(f"not a counted column: {sorted(unknown)}")
    values: dict[str, Any] = {column: counts.get(column, 0) for column in COUNTED}
    table = ActivityMinute.__table__
    stmt = dialect_sql.insert(session, table).values(
        org_id=org_id, minute=minute_of(minute), **values
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[table.c.org_id, table.c.minute],
            set_={column: table.c[column] + stmt.excluded[column] for column in counts},
        )
    )


def count_webhooks(session: Session, arrivals: Iterable[tuple[str, dt.datetime]]) -> None:
    """Webhooks (organization, received at) that left the inbox in this transaction, counted
    in the minute each arrived: a batch applied late still lands in the right minute."""
    per_minute = Counter((org_id, minute_of(received)) for org_id, received in arrivals)
    for (org_id, minute), webhooks in sorted(per_minute.items()):  # one lock order
        add(session, org_id, minute, webhooks=webhooks)


def count_batch(
    session: Session, org_id: str, delivered: int, refused: int = 0, retried: int = 0
) -> None:
    """A batch the CRM answered: operations it took, refused for good, and asked again."""
    add(session, org_id, utcnow(), batches=1, delivered=delivered, refused=refused,
        retried=retried)  # fmt: skip


def count_paused(session: Session, org_id: str) -> None:
    """A batch the CRM did not take (unreachable, throttled, credentials refused)."""
    add(session, org_id, utcnow(), paused=1)


def record_sample(
    session: Session, org_id: str, minute: dt.datetime, backlog: int, lag_seconds: float
) -> None:
    """The organization's backlog and lag as sampled in `minute` (a later sample in the same
    minute replaces it)."""
    table = ActivityMinute.__table__
    stmt = dialect_sql.insert(session, table).values(
        org_id=org_id,
        minute=minute_of(minute),
        **dict.fromkeys(COUNTED, 0),
        backlog=backlog,
        lag_seconds=lag_seconds,
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[table.c.org_id, table.c.minute],
            set_={column: stmt.excluded[column] for column in SAMPLED},
        )
    )
