"""Operations for a claimed batch, built from the mirror at send time: always the newest state.

Each comes with the outbox entry it is for, so that the CRM's answer settles entry by entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.delivery.claims import ClaimedEntry
from app.store import dialect_sql
from app.store.models import Customer, CustomerList, ListMember, Payment

# Contacts go first so that a CRM sees a customer before the payments and lists that name them.
KIND_ORDER = {"contact": 0, "payment": 1, "list": 2}


Keyed = tuple[tuple[str, str], dict[str, Any]]  # ((kind, key) of the entry, its operation)


def build_operations(session: Session, org_id: str, entries: Sequence[ClaimedEntry]) -> list[Keyed]:
    """The batch's operations from the newest stored state: contacts first, then payments, then
    list changes."""
    keys: dict[str, list[str]] = {kind: [] for kind in KIND_ORDER}
    for entry in entries:
        keys[entry.kind].append(entry.key)
    operations: list[Keyed] = []
    if keys["contact"]:
        # Plain rows, not ORM objects: a batch is read once and never written back.
        customers = session.execute(
            select(Customer.id, Customer.profile, Customer.statistics)
            .where(
                Customer.org_id == org_id,
                dialect_sql.is_any_of(session, Customer.id, keys["contact"]),
            )
            .order_by(Customer.id)
        )
        operations.extend(
            (("contact", row.id), {"type": "contact.upsert", "customerId": row.id,
                                   "contact": row.profile, "statistics": row.statistics})
            for row in customers
        )  # fmt: skip
    if keys["payment"]:
        payments = session.execute(
            select(Payment.id, Payment.record)
            .where(
                Payment.org_id == org_id,
                dialect_sql.is_any_of(session, Payment.id, keys["payment"]),
            )
            .order_by(Payment.id)
        )
        operations.extend(
            (("payment", row.id), {"type": "payment.upsert", **row.record}) for row in payments
        )
    if keys["list"]:
        operations.extend(list_operations(session, org_id, keys["list"]))
    return operations


def list_operations(session: Session, org_id: str, keys: list[str]) -> list[Keyed]:
    """list.add for a member as stored now, list.remove for one no longer stored."""
    pairs = sorted(tuple(key.split(":", 1)) for key in keys)
    by_list: dict[str, list[str]] = {}
    for list_id, customer_id in pairs:
        by_list.setdefault(list_id, []).append(customer_id)
    list_ids = set(by_list)
    # One query per list (a batch rarely spans more than one): an index probe per member,
    # where a (list, customer) IN list of pairs is planned as a scan of the organization.
    present = {
        (row.list_id, row.customer_id)
        for list_id, customer_ids in by_list.items()
        for row in session.execute(
            select(ListMember.list_id, ListMember.customer_id).where(
                ListMember.org_id == org_id,
                ListMember.list_id == list_id,
                dialect_sql.is_any_of(session, ListMember.customer_id, customer_ids),
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
        (("list", f"{list_id}:{customer_id}"),
         {"type": "list.add", "listId": list_id, "listName": names.get(list_id),
          "customerId": customer_id}
         if (list_id, customer_id) in present
         else {"type": "list.remove", "listId": list_id, "customerId": customer_id})
        for list_id, customer_id in pairs
    ]  # fmt: skip
