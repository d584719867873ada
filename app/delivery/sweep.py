"""Finding outbox work nobody is doing: a lost task, or a worker killed mid-batch."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select

from app.db import Database, utcnow
from app.models import OutboxEntry

FORGOTTEN_AFTER = dt.timedelta(seconds=20)


def orgs_with_forgotten_work(db: Database) -> list[str]:
    """Organizations with entries due for a while and not leased by a live batch."""
    now = utcnow()
    with db.transaction() as session:
        return list(
            session.scalars(
                select(OutboxEntry.org_id)
                .where(
                    OutboxEntry.pending,
                    OutboxEntry.next_attempt_at <= now - FORGOTTEN_AFTER,
                    or_(OutboxEntry.lease_until.is_(None), OutboxEntry.lease_until < now),
                )
                .distinct()
            )
        )
