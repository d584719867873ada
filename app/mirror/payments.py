"""Payments by the ordering rules: completed, then possibly refunded, never back.

A refund outranks a completion whatever their times, so a late `payment.completed` can never undo
a refund. Payments of guests (no customer) are stored for the record and never delivered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import tuple_
from sqlalchemy.orm import Session

from app.core.timestamps import to_iso, to_micros
from app.delivery import outbox
from app.loke.records import Payment
from app.mirror.keys import digest
from app.store import dialect_sql
from app.store.db import utcnow
from app.store.models import Payment as PaymentRow

_PAYMENT_COLUMNS = ("org_id", "id", "customer_id", "status", "rank", "version", "digest", "record",
                    "changed_at")  # fmt: skip


@cache
def _payment_upsert(dialect: str) -> Any:
    table = PaymentRow.__table__
    stmt = dialect_sql.bulk_insert_for(dialect, table, _PAYMENT_COLUMNS)
    new, old = stmt.excluded, table.c
    return stmt.on_conflict_do_update(
        index_elements=[old.org_id, old.id],
        set_={
            c: new[c]
            for c in ("customer_id", "status", "rank", "version", "digest", "record", "changed_at")
        },
        where=tuple_(new.rank, new.version, new.digest) > tuple_(old.rank, old.version, old.digest),
    ).returning(old.id, old.customer_id)


@dataclass(frozen=True)
class PaymentChange:
    """What one source says about a payment, with the key that orders it."""

    payment_id: str
    customer_id: str | None
    record: dict[str, Any]
    key: tuple[int, int, str]  # (rank: completed 1 / refunded 2, time in µs, digest)
    source_at: dt.datetime | None
    request_id: str | None = None


def change_from_payment(payment: Payment, refunded_event: bool) -> PaymentChange:
    """A payment as the CRM receives it. Refunded outranks completed, so it is never undone."""
    refunded = refunded_event or payment.refunded_at is not None
    record = {
        "paymentId": payment.id,
        "customerId": payment.customer.id if payment.customer else None,
        "status": "refunded" if refunded else "completed",
        "total": payment.total,
        "currency": payment.currency,
        "completedAt": to_iso(payment.completed_at),
        "refundedAt": to_iso(payment.refunded_at),
        "locationId": payment.location_id,
        "items": [
            {"id": i.id, "name": i.name, "quantity": i.quantity, "amount": i.amount}
            for i in payment.items
        ],
    }
    when = payment.refunded_at if refunded else payment.completed_at
    when = when or payment.completed_at or payment.created_at
    key = (2 if refunded else 1, to_micros(when), digest(record))
    customer_id = payment.customer.id if payment.customer else None
    return PaymentChange(payment.id, customer_id, record, key, when)


def apply_payments(session: Session, org_id: str, changes: Sequence[PaymentChange]) -> list[str]:
    """Upsert payments where the change outranks what is stored; mark delivered ones."""
    newest: dict[str, PaymentChange] = {}
    for change in changes:
        seen = newest.get(change.payment_id)
        if seen is None or change.key > seen.key:
            newest[change.payment_id] = change
    if not newest:
        return []
    now = utcnow()
    params = [
        {
            "org_id": org_id,
            "id": p.payment_id,
            "customer_id": p.customer_id,
            "status": p.record["status"],
            "rank": p.key[0],
            "version": p.key[1],
            "digest": p.key[2],
            "record": p.record,
            "changed_at": now,
        }
        for p in (newest[k] for k in sorted(newest))
    ]
    dialect = dialect_sql.name(session)
    result = session.execute(_payment_upsert(dialect), dialect_sql.bulk_params(dialect, params))
    changed = [(row.id, row.customer_id) for row in result]
    # Guests' payments are kept for the record but have no contact to attach to in the CRM.
    delivered = [(pid, cid) for pid, cid in changed if cid is not None]
    if delivered:
        outbox.mark_changed(
            session,
            org_id,
            [
                outbox.Change("payment", pid, cid, newest[pid].source_at, newest[pid].request_id)
                for pid, cid in delivered
            ],
        )
    return [pid for pid, _ in changed]
