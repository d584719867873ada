"""Customers by the ordering rules, applied in SQL: a stored state only ever moves to a newer one.

Profiles are ordered by LOKE's `updatedAt`, statistics by their own key (see `statistics_fields`),
each independently. `apply_customers` takes many changes at once (a batch of webhooks, a backfill
page), keeps the newest per customer, and writes them in one conditional upsert. The condition
lives in the statement, so any number of workers can apply in any order and the result is the
same. Every customer that really changed is marked in the outbox in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import case, or_, tuple_
from sqlalchemy.orm import Session

from app.core.timestamps import to_iso, to_micros
from app.delivery import outbox
from app.loke.records import Customer as CustomerRecord
from app.loke.records import CustomerTiny, Statistics
from app.mirror.keys import NO_STATS, PARTIAL_PROFILE, StatsKey, digest
from app.store import dialect_sql
from app.store.db import utcnow
from app.store.models import Customer


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
    return fields, (activity, counter, digest(fields))


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
