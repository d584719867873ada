"""Delivery lag: how long the oldest change not yet in the CRM has been waiting since it reached
the service, and, apart and labelled so, how old it was at LOKE.

A change reaches the service as a webhook (the inbox's `received_at`) or a page read by a
backfill, a reconciliation or a list resync (the outbox's `changed_at`, set when it is stored).
LOKE's own timestamp (`source_at`) says when the customer changed at LOKE: after a backfill of
customers last edited two years ago it is two years old, which says nothing of the service.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.store.models import InboxEvent, OutboxEntry


@dataclass(frozen=True)
class Lag:
    """An organization's delivery backlog and its ages, in seconds (0 when nothing waits)."""

    backlog: int = 0  # entities waiting for the CRM
    oldest_pending_seconds: float = 0.0  # the oldest of them, since it entered the outbox
    lag_seconds: float = 0.0  # the oldest change not delivered, webhooks not applied included
    loke_age_seconds: float = 0.0  # the oldest waiting change by LOKE's own timestamp


def lags(
    session: Session, now: dt.datetime, org_ids: Collection[str] | None = None
) -> dict[str, Lag]:
    """Every organization with something waiting (or those of `org_ids`), by id."""
    outbox = select(
        OutboxEntry.org_id,
        func.count(),
        func.min(OutboxEntry.changed_at),
        func.min(OutboxEntry.source_at),
    ).where(OutboxEntry.pending)
    # Webhooks stored but not applied yet wait too; there are few of them unless the workers
    # are behind (the partial index of pending events).
    inbox = select(InboxEvent.org_id, func.min(InboxEvent.received_at)).where(
        InboxEvent.status == "pending"
    )
    if org_ids is not None:
        outbox = outbox.where(OutboxEntry.org_id.in_(list(org_ids)))
        inbox = inbox.where(InboxEvent.org_id.in_(list(org_ids)))
    waiting = {
        org_id: (count, changed, source)
        for org_id, count, changed, source in session.execute(outbox.group_by(OutboxEntry.org_id))
    }
    pending_inbox = session.execute(inbox.group_by(InboxEvent.org_id)).all()
    unapplied: dict[str, dt.datetime] = dict(pending_inbox)
    found: dict[str, Lag] = {}
    for org_id in (set(waiting) | set(unapplied)) if org_ids is None else set(org_ids):
        count, changed, source = waiting.get(org_id, (0, None, None))
        oldest = _age(now, changed)
        found[org_id] = Lag(
            backlog=count,
            oldest_pending_seconds=oldest,
            lag_seconds=max(oldest, _age(now, unapplied.get(org_id))),
            loke_age_seconds=_age(now, source),
        )
    return found


def lag_of(session: Session, org_id: str, now: dt.datetime) -> Lag:
    """One organization's lag."""
    return lags(session, now, [org_id])[org_id]


def _age(now: dt.datetime, since: dt.datetime | None) -> float:
    return max((now - since).total_seconds(), 0.0) if since is not None else 0.0
