"""The ordering rules, applied in SQL: a stored state only ever moves to a newer one.

Each apply function takes many changes at once (a batch of webhooks, a backfill page), keeps the
newest per entity, and writes them in one conditional upsert. The condition lives in the
statement, so any number of workers can apply in any order and the result is the same. Every
entity that really changed is marked in the outbox in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import case, or_, tuple_
from sqlalchemy.orm import Session

from app import dialect_sql
from app.db import utcnow
from app.delivery import outbox
from app.events import Customer as CustomerRecord
from app.events import CustomerTiny, Payment, Statistics
from app.models import Customer
from app.models import Payment as PaymentRow
from app.timestamps import to_iso, to_micros

StatsKey = tuple[int, int, str]
# A profile known only from a payment, a statistics event or a list member has no timestamp: it
# sorts below every real one, even a (nonsensical) updatedAt before 1970.
PARTIAL_PROFILE = -(2**62)
NO_STATS: StatsKey = (0, -1, "")  # sorts below any real statistics


def _digest(value: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CustomerChange:
    """What one source says about a customer: a profile, statistics, or both."""

    customer_id: str
    profile: dict[str, Any] | None
    profile_version: int  # LOKE updatedAt in µs; PARTIAL_PROFILE when it has no timestamp
    statistics: dict[str, Any] | None
    stats_key: StatsKey
    source_at: dt.datetime | None  # LOKE's own time of the change, for lag
    request_id: str | None = None  # the webhook it came from, for tracing into delivery logs

    def merged_with(self, other: CustomerChange) -> CustomerChange:
        """The newest profile and the newest statistics of the two."""
        profile_from = other if other.profile_version > self.profile_version else self
        if self.profile is None:
            profile_from = other
        stats_from = other if other.stats_key > self.stats_key else self
        sources = [t for t in (self.source_at, other.source_at) if t is not None]
        return CustomerChange(
            customer_id=self.customer_id,
            profile=profile_from.profile,
            profile_version=profile_from.profile_version,
            statistics=stats_from.statistics,
            stats_key=stats_from.stats_key,
            source_at=max(sources) if sources else None,
            request_id=other.request_id or self.request_id,
        )


def statistics_fields(stats: Statistics) -> tuple[dict[str, Any], StatsKey]:
    """The statistics as delivered, and the key that orders them.

    LOKE's statistics carry no timestamp of their own: the newest last-activity time orders them,
    then the points counters (which only grow), then a digest so that equal keys still resolve the
    same way whatever order they arrive in.
    """
    fields = {
        "pointsBalance": stats.points_balance,
        "totalPointsEarned": stats.total_points_earned,
        "totalPointsRedeemed": stats.total_points_redeemed,
        "totalSpend": stats.total_spend,
        "lastPointsEarnedAt": to_iso(stats.last_points_earned_at),
        "lastPointsRedeemedAt": to_iso(stats.last_points_redeemed_at),
        "lastSpentAt": to_iso(stats.last_spent_at),
    }
    activity = max(
        to_micros(stats.last_points_earned_at),
        to_micros(stats.last_points_redeemed_at),
        to_micros(stats.last_spent_at),
    )
    counter = (stats.total_points_earned or 0) + (stats.total_points_redeemed or 0)
    return fields, (activity, counter, _digest(fields))


def _partial_profile(tiny: CustomerTiny) -> dict[str, Any]:
    return {
        "email": tiny.email,
        "firstName": tiny.first_name,
        "lastName": tiny.last_name,
        "phoneNumber": tiny.phone_number,
        "dob": None,
        "gender": None,
        "hasAgreedToMarketing": None,
        "createdAt": None,
        "updatedAt": None,
    }


def change_from_record(record: CustomerRecord) -> CustomerChange:
    """A full customer (customer.created/updated, or a backfill row)."""
    profile = _partial_profile(record) | {
        "dob": record.dob.isoformat() if record.dob else None,
        "gender": record.gender,
        "hasAgreedToMarketing": record.has_agreed_to_marketing,
        "createdAt": to_iso(record.created_at),
        "updatedAt": to_iso(record.updated_at),
    }
    stats, key = (None, NO_STATS)
    if record.statistics is not None:
        stats, key = statistics_fields(record.statistics)
    return CustomerChange(
        record.id, profile, to_micros(record.updated_at), stats, key, record.updated_at
    )


def change_from_statistics(tiny: CustomerTiny, stats: Statistics) -> CustomerChange:
    """customer.updated-statistics: new statistics, and a profile only if we have none yet."""
    fields, key = statistics_fields(stats)
    times = [stats.last_points_earned_at, stats.last_points_redeemed_at, stats.last_spent_at]
    known = [t for t in times if t is not None]
    return CustomerChange(
        tiny.id, _partial_profile(tiny), PARTIAL_PROFILE, fields, key, max(known) if known else None
    )


def change_from_tiny(tiny: CustomerTiny) -> CustomerChange:
    """A customer we only know from a payment or a list member: kept until the real one arrives."""
    return CustomerChange(tiny.id, _partial_profile(tiny), PARTIAL_PROFILE, None, NO_STATS, None)


def newest_per_customer(changes: Iterable[CustomerChange]) -> list[CustomerChange]:
    """One change per customer, sorted by id (a stable lock order between workers)."""
    newest: dict[str, CustomerChange] = {}
    for change in changes:
        seen = newest.get(change.customer_id)
        newest[change.customer_id] = change if seen is None else seen.merged_with(change)
    return [newest[k] for k in sorted(newest)]


def apply_customers(session: Session, org_id: str, changes: Iterable[CustomerChange]) -> list[str]:
    """Upsert customers where the change is newer; mark what changed; return the changed ids."""
    rows = newest_per_customer(changes)
    if not rows:
        return []
    now = utcnow()
    params = [
        {
            "org_id": org_id,
            "id": c.customer_id,
            "profile": c.profile,
            "profile_version": c.profile_version,
            "statistics": c.statistics,
            "stats_activity": c.stats_key[0],
            "stats_counter": c.stats_key[1],
            "stats_digest": c.stats_key[2],
            "first_seen_at": now,
            "changed_at": now,
        }
        for c in rows
    ]
    dialect = dialect_sql.name(session)
    changed = list(
        session.execute(_customer_upsert(dialect), dialect_sql.bulk_params(dialect, params))
        .scalars()
        .all()
    )
    if changed:
        by_id = {c.customer_id: c for c in rows}
        outbox.mark_changed(
            session,
            org_id,
            [
                outbox.Change("contact", cid, cid, by_id[cid].source_at, by_id[cid].request_id)
                for cid in changed
            ],
        )
    return changed


_CUSTOMER_COLUMNS = ("org_id", "id", "profile", "profile_version", "statistics", "stats_activity",
                     "stats_counter", "stats_digest", "first_seen_at", "changed_at")  # fmt: skip
_PAYMENT_COLUMNS = ("org_id", "id", "customer_id", "status", "rank", "version", "digest", "record",
                    "changed_at")  # fmt: skip


@cache
def _customer_upsert(dialect: str) -> Any:
    table = Customer.__table__
    stmt = dialect_sql.bulk_insert_for(dialect, table, _CUSTOMER_COLUMNS)
    new, old = stmt.excluded, table.c
    profile_newer = new.profile_version > old.profile_version
    stats_newer = tuple_(new.stats_activity, new.stats_counter, new.stats_digest) > tuple_(
        old.stats_activity, old.stats_counter, old.stats_digest
    )

    def pick(newer: Any, column: str) -> Any:
        return case((newer, new[column]), else_=old[column])

    return stmt.on_conflict_do_update(
        index_elements=[old.org_id, old.id],
        set_={
            "profile": pick(profile_newer, "profile"),
            "profile_version": pick(profile_newer, "profile_version"),
            "statistics": pick(stats_newer, "statistics"),
            "stats_activity": pick(stats_newer, "stats_activity"),
            "stats_counter": pick(stats_newer, "stats_counter"),
            "stats_digest": pick(stats_newer, "stats_digest"),
            "changed_at": new.changed_at,
        },
        where=or_(profile_newer, stats_newer),
    ).returning(old.id)


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
    key = (2 if refunded else 1, to_micros(when), _digest(record))
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
