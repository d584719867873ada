"""Claiming a batch of the outbox: the rows it carries are leased, with the `seq` each carried.

Up to `maxConcurrentRequests` batches of one organization may be in flight, claimed by any worker
on any machine; a customer already in an unanswered batch is left for a later one. Claims of one
organization are serialized by a row lock on its delivery state, and a claim takes the next
slot of its CRM account's allowance (GCRA) under that account's own row lock, which every
organization spending the account shares. Rows are taken with SKIP LOCKED: a claim never
waits for the rows an event or a settle is writing, so it cannot deadlock with them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from app.delivery import daily_budget
from app.store import dialect_sql
from app.store.db import utcnow
from app.store.models import DeliveryState, OutboxEntry, RateAccount

# A claim may take the account's next slot this far ahead and wait for it with its batch in
# hand: slots then follow each other exactly, where claiming only once a slot has come would
# lose each claimer's lateness (waking, waiting for the lock) from the account's rate.
RESERVE_AHEAD = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class Pace:
    """How an organization's destination may be sent to."""

    batch_size: int
    max_in_flight: int  # batches of the organization unanswered at once
    account: str  # the CRM account whose allowance a request spends
    seconds_per_request: float  # of that allowance
    daily_limit: int | None = None  # requests the account may spend in the CRM's day
    time_zone: str | None = None  # the CRM's day


@dataclass(frozen=True)
class ClaimedEntry:
    """One outbox entry leased for a batch, with what sending and metrics need."""

    kind: str
    key: str
    customer_id: str
    seq: int
    attempts: int
    source_at: dt.datetime | None
    changed_at: dt.datetime
    request_id: str | None


@dataclass(frozen=True)
class Claimed:
    """A batch claimed: its lease, its idempotency key, its entries, and the moment its
    account's allowance lets it go."""

    lease: str  # this claim's own token: settling and renewing go by it
    batch_id: str  # the same for the same entries at the same state (the Idempotency-Key)
    entries: list[ClaimedEntry]
    send_at: dt.datetime  # its slot in the account's allowance (at most RESERVE_AHEAD away)


@dataclass(frozen=True)
class Wait:
    """Nothing may be sent before `until`: the destination is paused, or the account's
    allowance is spent (`throttled`: the CRM said so)."""

    until: dt.datetime
    throttled: bool = False


@dataclass(frozen=True)
class Full:
    """As many batches of the organization are in flight as it allows."""


@dataclass(frozen=True)
class Idle:
    """Nothing claimable now; `next_due` is when a retrying entry becomes due, if any (entries
    waiting for a batch in flight are sent when it is answered)."""

    next_due: dt.datetime | None


def claim_batch(
    session: Session, org_id: str, pace: Pace, lease: dt.timedelta
) -> Claimed | Wait | Full | Idle:
    """Lease up to `pace.batch_size` due entries of customers not in flight, if the
    organization's destination and its account allow a request now."""
    state = lock_state(session, org_id)
    now = utcnow()  # after the lock: a claim that waited for it must not judge by an old clock
    if state.paused_until is not None and state.paused_until > now:
        return Wait(state.paused_until)
    if batches_in_flight(session, org_id, now) >= pace.max_in_flight:
        return Full()
    account = _lock_account(session, pace.account)
    if account.throttled_until is not None and account.throttled_until > now:
        return Wait(account.throttled_until, throttled=True)
    closed = daily_budget.closed_until(account, pace.daily_limit, pace.time_zone, now)
    if closed is not None:
        account.throttled_until = closed  # shown as throttled until the CRM's day ends
        account.throttle_reason = f"daily limit of {pace.daily_limit} requests reached"
        return Wait(closed, throttled=True)
    if account.tat > now + RESERVE_AHEAD:
        return Wait(account.tat - RESERVE_AHEAD)
    send_at = max(account.tat, now)
    token = uuid.uuid4().hex
    picked = session.execute(_due(org_id, pace.batch_size, now)).all()  # locked, SKIP LOCKED
    if not picked:
        return Idle(_next_due(session, org_id, now))
    keys_by_kind: dict[str, list[str]] = defaultdict(list)
    for kind, key in picked:
        keys_by_kind[kind].append(key)
    entries: list[ClaimedEntry] = []
    # One UPDATE per kind, by primary key: joined to the picked rows in one statement, a
    # planner with stale statistics scans the organization's whole outbox for the join.
    for kind, keys in sorted(keys_by_kind.items()):
        leased = session.execute(
            update(OutboxEntry)
            .where(
                OutboxEntry.org_id == org_id,
                OutboxEntry.kind == kind,
                dialect_sql.is_any_of(session, OutboxEntry.key, keys),
            )
            .values(lease_batch=token, lease_seq=OutboxEntry.seq, lease_until=now + lease)
            .returning(
                OutboxEntry.kind,
                OutboxEntry.key,
                OutboxEntry.customer_id,
                OutboxEntry.seq,
                OutboxEntry.attempts,
                OutboxEntry.source_at,
                OutboxEntry.changed_at,
                OutboxEntry.request_id,
            )
            .execution_options(synchronize_session=False)
        )
        entries += map(_entry, leased)
    entries.sort(key=lambda e: (e.kind, e.key))
    return Claimed(token, batch_key(org_id, entries), entries, send_at)


def _entry(row: Any) -> ClaimedEntry:
    return ClaimedEntry(
        kind=row.kind,
        key=row.key,
        customer_id=row.customer_id,
        seq=row.seq,
        attempts=row.attempts,
        source_at=row.source_at,
        changed_at=row.changed_at,
        request_id=row.request_id,
    )


def charge(session: Session, pace: Pace, requests: int) -> None:
    """Spend `requests` of the account's allowance from the claim's slot on (the row is
    locked by the claim), and of its day."""
    account = _lock_account(session, pace.account)
    now = utcnow()
    account.tat = max(account.tat, now) + dt.timedelta(seconds=requests * pace.seconds_per_request)
    daily_budget.spend(account, pace.time_zone, now, requests)
    account.updated_at = now


def throttle(session: Session, account: str, until: dt.datetime, reason: str) -> None:
    """The CRM said the account is over its limit: nobody spends it before `until`."""
    row = _lock_account(session, account)
    if row.throttled_until is None or row.throttled_until < until:
        row.throttled_until, row.throttle_reason = until, reason
    row.updated_at = utcnow()


def batch_key(org_id: str, entries: list[ClaimedEntry]) -> str:
    """The batch's Idempotency-Key: the same for the same entries at the same state and
    attempt (an answer lost to a timeout is not applied twice), new for anything else."""
    digest = hashlib.sha256(org_id.encode())
    for e in entries:
        digest.update(f"\n{e.kind}\t{e.key}\t{e.seq}\t{e.attempts}".encode())
    return digest.hexdigest()[:32]


def batches_in_flight(session: Session, org_id: str, now: dt.datetime) -> int:
    """Unanswered batches of the organization (their leases still running)."""
    return int(
        session.scalar(
            select(func.count(func.distinct(OutboxEntry.lease_batch))).where(
                OutboxEntry.org_id == org_id,
                OutboxEntry.lease_batch.is_not(None),  # the partial index of leased rows
                OutboxEntry.lease_until > now,
            )
        )
        or 0
    )


def has_claimable(session: Session, org_id: str) -> bool:
    """Whether another batch could be claimed now (ignoring the limits)."""
    return session.scalar(_due(org_id, 1, utcnow(), lock=False)) is not None


def _due(org_id: str, limit: int, now: dt.datetime, lock: bool = True) -> Any:
    """The oldest due entries of customers that no unanswered batch carries (locked,
    skipping rows that another transaction is writing).

    The plan must not depend on fresh statistics: a backfill fills the outbox faster than
    autovacuum analyzes it, and a planner that believes an organization has one pending row
    probes the leased rows once per pending row (measured: 1.1 s a claim at 15,000 pending,
    under the lock every claim of the organization waits for). So the customers in flight, a
    few thousand at most, are one hashed NOT IN, and the order is the claimable index's own,
    which the scan follows until the batch is full.
    """
    other = aliased(OutboxEntry)
    in_flight = select(other.customer_id).where(
        other.org_id == org_id,
        other.lease_batch.is_not(None),  # the partial index of leased rows
        other.lease_until > now,
    )
    query = (
        select(OutboxEntry.kind, OutboxEntry.key)
        .where(
            OutboxEntry.org_id == org_id,
            OutboxEntry.pending,
            OutboxEntry.next_attempt_at <= now,
            OutboxEntry.customer_id.not_in(in_flight),  # never NULL: NOT IN is exact
        )
        .order_by(OutboxEntry.changed_at, OutboxEntry.kind, OutboxEntry.key)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True, of=OutboxEntry)
    return query


def _next_due(session: Session, org_id: str, now: dt.datetime) -> dt.datetime | None:
    return session.scalar(
        select(func.min(OutboxEntry.next_attempt_at)).where(
            OutboxEntry.org_id == org_id,
            OutboxEntry.pending,
            OutboxEntry.next_attempt_at > now,
        )
    )


def lock_state(session: Session, org_id: str) -> DeliveryState:
    """The organization's delivery state, locked (made on first use)."""
    session.execute(
        dialect_sql.insert(session, DeliveryState.__table__)
        .values(org_id=org_id, consecutive_failures=0)
        .on_conflict_do_nothing()
    )
    return session.scalars(
        select(DeliveryState).where(DeliveryState.org_id == org_id).with_for_update()
    ).one()


def _lock_account(session: Session, key: str) -> RateAccount:
    """The account's row, locked; a new account may spend at once."""
    now = utcnow() - dt.timedelta(seconds=1)
    session.execute(
        dialect_sql.insert(session, RateAccount.__table__)
        .values(key=key, tat=now, updated_at=now)
        .on_conflict_do_nothing()
    )
    return session.scalars(
        select(RateAccount).where(RateAccount.key == key).with_for_update()
    ).one()
