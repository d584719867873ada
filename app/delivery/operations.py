"""Operations for a claimed batch, built from the mirror at send time: always the newest state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Customer, OutboxEntry, Payment

# Contacts go first so that a CRM sees a customer before the payments that name them.
KIND_ORDER = {"contact": 0, "payment": 1}


def build_operations(
    session: Session, org_id: str, entries: Sequence[OutboxEntry]
) -> list[dict[str, Any]]:
    keys: dict[str, list[str]] = {kind: [] for kind in KIND_ORDER}
    for entry in entries:
        keys[entry.kind].append(entry.key)
    operations: list[dict[str, Any]] = []
    if keys["contact"]:
        customers = session.scalars(
            select(Customer).where(Customer.org_id == org_id, Customer.id.in_(keys["contact"]))
        )
        operations.extend(contact_upsert(c) for c in sorted(customers, key=lambda c: c.id))
    if keys["payment"]:
        payments = session.scalars(
            select(Payment).where(Payment.org_id == org_id, Payment.id.in_(keys["payment"]))
        )
        operations.extend(
            {"type": "payment.upsert", **p.record} for p in sorted(payments, key=lambda p: p.id)
        )
    return operations


def contact_upsert(customer: Customer) -> dict[str, Any]:
    return {
        "type": "contact.upsert",
        "customerId": customer.id,
        "contact": customer.profile,
        "statistics": customer.statistics,
    }
