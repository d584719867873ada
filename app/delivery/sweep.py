"""Finding outbox work nobody is doing: a lost task, or a worker killed mid-batch."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select

from app.store.db import Database, utcnow
from app.store.models import OutboxEntry


def orgs_with_forgotten_work(db: Database, after_seconds: float) -> list[str]:
    """Organizations with entries due for a while and not leased by a live batch."""
    now = utcnow()
    forgotten_after = dt.timedelta(seconds=after_seconds)
    with db.transaction() as session:
        return list(
            session.scalars(
                select(OutboxEntry.org_id)
                .where(
                    OutboxEntry.pending,
                    OutboxEntry.next_attempt_at <= now - forgotten_after,
                    or_(OutboxEntry.lease_until.is_(None), OutboxEntry.lease_until < now),
                )
                .distinct()
            )
        )
