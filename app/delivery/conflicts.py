"""Customers a CRM holds without part of their data (an email another contact holds, or one the
CRM calls invalid): listed for a person to see, and sent again on request once the cause is
fixed (the other contact's email changed in the CRM, say), as a dead letter is replayed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.services import Services
from app.core.task_names import DELIVERY_FLUSH
from app.delivery import outbox
from app.store.models import DeliveryConflict


def listing(session: Session, org_id: str, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """The organization's conflicts, newest first, and why."""
    rows = session.scalars(
        select(DeliveryConflict)
        .where(DeliveryConflict.org_id == org_id)
        .order_by(DeliveryConflict.detected_at.desc(), DeliveryConflict.customer_id)
        .limit(limit)
        .offset(offset)
    )
    return [
        {
            "customerId": row.customer_id,
            "email": row.email,
            "reason": row.reason,
            "existingRecordId": row.existing_record_id,
            "detectedAt": row.detected_at.isoformat(),
        }
        for row in rows
    ]


def retry(services: Services, org_id: str) -> int:
    """Send every conflicted customer's newest state again; returns how many. Each conflict
    stays shown until the CRM takes the customer whole."""
    with services.db.transaction() as session:
        customers = list(
            session.scalars(
                select(DeliveryConflict.customer_id)
                .where(DeliveryConflict.org_id == org_id)
                .order_by(DeliveryConflict.customer_id)
            )
        )
        outbox.requeue(session, org_id, [("contact", c) for c in customers])
    if customers:
        services.kicks.kick(DELIVERY_FLUSH, org_id)
    return len(customers)
