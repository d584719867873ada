"""Operations for a claimed batch, built from the mirror at send time: always the newest state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from app.models import Customer, CustomerList, ListMember, OutboxEntry, Payment

# Contacts go first so that a CRM sees a customer before the payments and lists that name them.
KIND_ORDER = {"contact": 0, "payment": 1, "list": 2}


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
    if keys["list"]:
        operations.extend(list_operations(session, org_id, keys["list"]))
    return operations


def list_operations(session: Session, org_id: str, keys: list[str]) -> list[dict[str, Any]]:
    """list.add for a member as stored now, list.remove for one no longer stored."""
    pairs = sorted(tuple(key.split(":", 1)) for key in keys)
    list_ids = {list_id for list_id, _ in pairs}
    present = {
        (row.list_id, row.customer_id)
        for row in session.execute(
            select(ListMember.list_id, ListMember.customer_id).where(
                ListMember.org_id == org_id,
                tuple_(ListMember.list_id, ListMember.customer_id).in_(pairs),
            )
        )
    }
    names = {
        row.id: row.name
        for row in session.execute(
            select(CustomerList.id, CustomerList.name).where(
                CustomerList.org_id == org_id, CustomerList.id.in_(list_ids)
            )
        )
    }
    return [
        {"type": "list.add", "listId": list_id, "listName": names.get(list_id),
         "customerId": customer_id}
        if (list_id, customer_id) in present
        else {"type": "list.remove", "listId": list_id, "customerId": customer_id}
        for list_id, customer_id in pairs
    ]  # fmt: skip


def contact_upsert(customer: Customer) -> dict[str, Any]:
    return {
        "type": "contact.upsert",
        "customerId": customer.id,
        "contact": customer.profile,
        "statistics": customer.statistics,
    }
