"""The stored view of one customer, as GET /api/orgs/<orgId>/customers/<customerId> shows it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.mirror.keys import PARTIAL_PROFILE
from app.store.models import Customer, ListMember, OutboxEntry, Payment


def view(session: Session, org_id: str, customer_id: str) -> dict[str, Any] | None:
    """The stored view of one customer (GET /api/orgs/<orgId>/customers/<customerId>), or None."""
    customer = session.get(Customer, (org_id, customer_id))
    if customer is None:
        return None
    payments = session.scalars(
        select(Payment)
        .where(Payment.org_id == org_id, Payment.customer_id == customer_id)
        .order_by(Payment.version.desc())
        .limit(100)
    )
    deliveries = session.scalars(
        select(OutboxEntry).where(
            OutboxEntry.org_id == org_id,
            or_(OutboxEntry.customer_id == customer_id, OutboxEntry.key == customer_id),
        )
    )
    return {
        "id": customer.id,
        "orgId": org_id,
        "profile": customer.profile,
        "partial": customer.profile_version == PARTIAL_PROFILE,
        "statistics": customer.statistics,
        "payments": [p.record for p in payments],
        "lists": sorted(
            session.scalars(
                select(ListMember.list_id).where(
                    ListMember.org_id == org_id, ListMember.customer_id == customer_id
                )
            )
        ),
        "delivery": [
            {
                "kind": d.kind,
                "key": d.key,
                "pending": d.pending,
                "attempts": d.attempts,
                "inFlight": d.lease_batch is not None,
                "lastError": d.last_error,
            }
            for d in deliveries
        ],
        "firstSeenAt": customer.first_seen_at.isoformat(),
        "changedAt": customer.changed_at.isoformat(),
    }
