"""The stored view of one customer, as GET /api/orgs/<orgId>/customers/<customerId> shows it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.mirror.keys import PARTIAL_PROFILE
from app.store.models import CrmContact, Customer, ListMember, OutboxEntry, Payment


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
        select(OutboxEntry)
        .where(
            OutboxEntry.org_id == org_id,
            or_(OutboxEntry.customer_id == customer_id, OutboxEntry.key == customer_id),
        )
        # What still waits first, then the latest changes.
        .order_by(OutboxEntry.pending.desc(), OutboxEntry.changed_at.desc(), OutboxEntry.key)
    )
    crm_contact = session.get(CrmContact, (org_id, customer_id))  # HubSpot's record, if known
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
                # seq counts the entity's changes: of a settled entry, the last one delivered
                # (or refused: lastError); changedAt is when its oldest undelivered change
                # reached the service, or the delivered change's once settled.
                "seq": d.seq,
                "changedAt": d.changed_at.isoformat(),
                "nextAttemptAt": d.next_attempt_at.isoformat() if d.pending else None,
            }
            for d in deliveries
        ],
        "crmRecordId": crm_contact.record_id if crm_contact else None,
        "firstSeenAt": customer.first_seen_at.isoformat(),
        "changedAt": customer.changed_at.isoformat(),
    }
