"""Applying stored webhooks to the mirror, a batch per transaction, a bad event never blocking.

Events are applied set-wise (one conditional upsert per kind per organization), which is why
a batch costs about what one event would. Each event's effects are all-or-nothing and
idempotent: its inbox row leaves `pending` in the same transaction, and re-applying an old
state changes nothing, so redelivered tasks cannot double anything.

A batch that fails for a reason of its own (data the store refuses, an event the code cannot
handle) is applied again one event per transaction, so that the event at fault fails alone
(`failed`, with its reason, and a dead letter) and the others are applied. A failure that says
nothing about the events (the database gone, the task out of time) fails the whole drain, and
the batch stays pending for the task's retry.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from app.activity import minutes
from app.core.kicks import Kick
from app.core.metrics import APPLY_LATENCY, EVENTS
from app.core.services import Services
from app.core.task_names import DELIVERY_FLUSH, EVENTS_DRAIN
from app.ingest import inbox
from app.loke.records import CustomerEvent, InvalidEvent, PaymentEvent, StatisticsEvent, parse_event
from app.mirror import customers, payments
from app.mirror.customers import CustomerChange
from app.mirror.payments import PaymentChange
from app.store.db import DatabaseUnavailable, utcnow
from app.store.models import InboxEvent, Organization

log = logging.getLogger(__name__)

# Failures of the moment, not of any event: applying one by one would only fail every event.
_NOT_THE_EVENTS_FAULT = (OperationalError, DatabaseUnavailable, SoftTimeLimitExceeded)
_REASON_CHARS = 500  # of an exception's message kept in the dead letter (the log has it all)


@dataclass
class DrainResult:
    """What one drain did, by outcome; `more` when it stopped with events still pending."""

    applied: int = 0
    ignored: int = 0
    failed: int = 0
    more: bool = False


@dataclass
class _OrgChanges:
    customers: list[CustomerChange] = field(default_factory=list)
    payments: list[PaymentChange] = field(default_factory=list)


def drain_inbox(
    services: Services, sent_by: str = Kick.NOW, time_budget: float = 20.0
) -> DrainResult:
    """Apply pending events until none are left or the time budget is spent."""
    services.kicks.started(EVENTS_DRAIN, sent_by=sent_by)
    result = DrainResult()
    deadline = time.monotonic() + time_budget
    batch_size = services.settings.inbox_batch_size
    while time.monotonic() < deadline:
        changed: set[str] = set()
        rows: list[InboxEvent] = []
        done = DrainResult()
        try:
            with services.db.transaction() as session:
                rows = inbox.claim_pending(session, batch_size)
                if not rows:
                    break
                changed = _apply(session, rows, done)
        except _NOT_THE_EVENTS_FAULT:
            raise  # connection lost, deadlock, out of time: the task retries the whole batch later
        except Exception:
            # Any other failure may be one event's (a bug, a payload shape nobody expected):
            # failing the batch would fail it again on every retry, stalling the inbox.
            log.exception("batch of events failed; applying them one by one")
            changed = _apply_one_by_one(services, batch_size, result)
        else:
            _count(result, done)  # once committed: a batch rolled back is counted one by one
        # Delivery starts as soon as a batch is committed, not when the backlog is gone; and a
        # full batch means more is waiting, so another drain joins in (claims skip locked rows).
        for org_id in changed:
            services.kicks.kick(DELIVERY_FLUSH, org_id)
        if len(rows) == batch_size:
            services.kicks.kick(EVENTS_DRAIN)
    else:
        result.more = True
        services.kicks.kick(EVENTS_DRAIN)
    return result


def _apply_one_by_one(services: Services, batch_size: int, result: DrainResult) -> set[str]:
    changed: set[str] = set()
    with services.db.transaction() as session:
        ids = [row.id for row in inbox.claim_pending(session, batch_size)]
    for inbox_id in ids:
        done = DrainResult()
        try:
            with services.db.transaction() as session:
                rows = inbox.claim_pending(session, 1, ids=[inbox_id])
                changed |= _apply(session, rows, done)
        except _NOT_THE_EVENTS_FAULT:
            raise
        except Exception as exc:
            log.exception("event %s could not be applied", inbox_id)
            done = DrainResult()  # what the rolled-back transaction counted did not happen
            with services.db.transaction() as session:
                for row in inbox.claim_pending(session, 1, ids=[inbox_id]):
                    inbox.fail(session, row, _reason(exc))
                    done.failed += 1
                    minutes.count_webhooks(session, [(row.org_id, row.received_at)])
        _count(result, done)
    return changed


def _reason(exc: Exception) -> str:
    """Why an event failed, for the person reading its dead letter."""
    if isinstance(exc, DBAPIError):
        return f"could not be stored: {type(exc.orig).__name__}"
    # The message may quote the payload: bounded, and without the NUL PostgreSQL cannot store.
    message = str(exc).replace("\x00", "\\x00")[:_REASON_CHARS]
    return f"could not be applied: {type(exc).__name__}: {message}"


def _count(result: DrainResult, done: DrainResult) -> None:
    """Add what a committed transaction did to the drain's result and to the metrics."""
    result.applied += done.applied
    result.ignored += done.ignored
    result.failed += done.failed
    counts = {"applied": done.applied, "ignored": done.ignored, "failed": done.failed}
    for outcome, count in counts.items():
        if count:
            EVENTS.labels(outcome).inc(count)


def _apply(session: Session, rows: Sequence[InboxEvent], result: DrainResult) -> set[str]:
    """Apply claimed events, counting them in `result`; returns the organizations whose outbox
    changed. Raises whatever applying raised: the caller's transaction then undoes it all."""
    org_ids = {row.org_id for row in rows}
    connected = set(
        session.scalars(
            select(Organization.id).where(Organization.id.in_(org_ids), Organization.connected)
        )
    )
    changes: dict[str, _OrgChanges] = defaultdict(_OrgChanges)
    applied: list[InboxEvent] = []
    source_times: list[dt.datetime | None] = []
    for row in rows:
        if row.org_id not in connected:
            inbox.mark(session, [row.id], "ignored", "organization not connected")
            result.ignored += 1
            continue
        try:
            event = parse_event(json.loads(row.body))
        except (InvalidEvent, ValueError) as exc:
            inbox.fail(session, row, str(exc))
            log.warning("event %s refused: %s", row.id, exc)
            result.failed += 1
            continue
        source_times.append(_collect(event, changes[row.org_id], row.request_id))
        applied.append(row)
    changed_orgs: set[str] = set()
    for org_id, org_changes in changes.items():
        changed = customers.apply_customers(session, org_id, org_changes.customers)
        changed += payments.apply_payments(session, org_id, org_changes.payments)
        if changed:
            changed_orgs.add(org_id)
    inbox.mark(session, [row.id for row in applied], "applied")
    if applied:
        log.info(
            "applied %d events",
            len(applied),
            extra={"request_ids": [r.request_id for r in applied], "org_ids": sorted(changes)},
        )
    result.applied += len(applied)
    _observe(applied, source_times)
    # Last, once per batch: the webhooks of a minute, for the dashboard's charts.
    minutes.count_webhooks(session, [(row.org_id, row.received_at) for row in rows])
    return changed_orgs


def _collect(
    event: CustomerEvent | StatisticsEvent | PaymentEvent,
    into: _OrgChanges,
    request_id: str | None,
) -> dt.datetime | None:
    """Add the event's changes; returns LOKE's own timestamp of it, if it has one."""
    if isinstance(event, CustomerEvent | StatisticsEvent):
        if isinstance(event, CustomerEvent):
            change = customers.change_from_record(event.customer)
        else:
            change = customers.change_from_statistics(event.customer, event.statistics)
        into.customers.append(replace(change, request_id=request_id))
        return change.source_at
    payment = event.payment
    paid = payments.change_from_payment(payment, refunded_event=event.event == "payment.refunded")
    into.payments.append(replace(paid, request_id=request_id))
    if payment.customer is not None:
        # Known only by this payment so far: the CRM gets a contact to attach it to.
        tiny = customers.change_from_tiny(payment.customer)
        into.customers.append(replace(tiny, request_id=request_id))
    return paid.source_at


def _observe(rows: Sequence[InboxEvent], source_times: list[dt.datetime | None]) -> None:
    now = utcnow()
    for row, source_at in zip(rows, source_times, strict=True):
        APPLY_LATENCY.labels("arrival").observe((now - row.received_at).total_seconds())
        if source_at is not None:
            APPLY_LATENCY.labels("payload").observe(max((now - source_at).total_seconds(), 0))
