"""Sending one organization's outbox to its destination, batch after batch, within its limits.

Any number of these may run at once for one organization, on any machine: the claim decides
who sends what, and no transaction is held open while a batch is on the wire.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from app.core import logs
from app.core.backoff import backoff_seconds
from app.core.kicks import Kick
from app.core.metrics import DELIVERY_BATCHES, DELIVERY_LATENCY, DELIVERY_OPERATIONS
from app.core.services import Services
from app.core.task_names import DELIVERY_FLUSH
from app.delivery import claims, destinations, settle
from app.delivery.destinations.base import (
    Batch,
    Destination,
    DestinationConfig,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from app.delivery.operations import build_operations
from app.store.db import utcnow
from app.store.models import Organization

log = logging.getLogger(__name__)

SLEEP_WITHIN_TASK = 1.0  # waits shorter than this are slept; longer ones become a countdown


@dataclass
class FlushResult:
    """What one flush did, and when the organization has work again (if it has)."""

    batches: int = 0
    operations: int = 0
    resume_in: float | None = None  # seconds until this organization has work again


def flush_org(
    services: Services, org_id: str, sent_by: str = Kick.NOW, time_budget: float = 30.0
) -> FlushResult:
    """Deliver what is pending for one organization; schedule itself again if work remains."""
    services.kicks.started(DELIVERY_FLUSH, org_id, sent_by=sent_by)
    with logs.context(org_id=org_id):
        return _flush_org(services, org_id, time_budget)


def _flush_org(services: Services, org_id: str, time_budget: float) -> FlushResult:
    result = FlushResult()
    with services.db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None or not org.connected or not org.destination:
            return result
        config = destinations.parse_config(org.destination)
        secret = services.box.decrypt(org.destination_secret_enc or "")
    destination = destinations.build(
        org.destination, secret, services.settings.delivery_timeout_seconds, services.http
    )
    lease = dt.timedelta(seconds=services.settings.delivery_lease_seconds)
    token = uuid.uuid4().hex
    with services.db.transaction() as session:
        if not claims.take_flusher(session, org_id, token, lease):
            return result  # the live flusher takes new work too (see below)
    try:
        _flush(services, org_id, config, destination, lease, token, time_budget, result)
    finally:
        with services.db.transaction() as session:
            claims.release_flusher(session, org_id, token)
    if result.resume_in is not None:
        services.kicks.kick_later(DELIVERY_FLUSH, org_id, countdown=result.resume_in)
    else:
        # Work that arrived while we held the slot may have had its own flush turned away:
        # look once more, now that the slot is free.
        with services.db.transaction() as session:
            more = claims.has_claimable(session, org_id)
        if more:
            services.kicks.kick(DELIVERY_FLUSH, org_id)
    return result


def _flush(
    services: Services,
    org_id: str,
    config: DestinationConfig,
    destination: Destination,
    lease: dt.timedelta,
    token: str,
    time_budget: float,
    result: FlushResult,
) -> None:
    deadline = time.monotonic() + time_budget
    while True:
        if time.monotonic() >= deadline:
            result.resume_in = 0
            break
        with services.db.transaction() as session:
            claim = claims.claim_batch(
                session, org_id, config.batch_size, config.max_requests_per_second, lease, token
            )
            if isinstance(claim, claims.Claimed):
                outgoing = Outgoing(
                    Batch(claim.batch_id, org_id, build_operations(session, org_id, claim.entries)),
                    keys=[(e.kind, e.key) for e in claim.entries],
                    attempts=max(e.attempts for e in claim.entries),
                    since=[(e.source_at, e.changed_at) for e in claim.entries],
                    request_ids=sorted({e.request_id for e in claim.entries if e.request_id}),
                )
        if isinstance(claim, claims.Wait):
            wait = (claim.until - utcnow()).total_seconds()
            if wait <= SLEEP_WITHIN_TASK:
                time.sleep(max(wait, 0))
                continue
            result.resume_in = wait
            break
        if isinstance(claim, claims.Idle):
            if claim.next_due is not None:
                result.resume_in = max((claim.next_due - utcnow()).total_seconds(), 0.05)
            break
        _send(services, destination, outgoing)
        result.batches += 1
        result.operations += len(outgoing.batch.operations)


@dataclass(frozen=True)
class Outgoing:
    """A claimed batch on its way: the operations, and what settling and metrics need."""

    batch: Batch
    keys: list[tuple[str, str]]
    attempts: int  # of the most-tried entry: drives the backoff and the bound
    since: list[tuple[dt.datetime | None, dt.datetime]]  # (LOKE's time, entered the outbox)
    request_ids: list[str]  # the webhooks whose changes this batch carries


def _send(services: Services, destination: Destination, outgoing: Outgoing) -> None:
    settings = services.settings
    batch, keys, attempts = outgoing.batch, outgoing.keys, outgoing.attempts
    org_id = batch.org_id
    try:
        if batch.operations:  # empty only if the entities were purged meanwhile
            destination.send(batch)
    except RetryableDeliveryError as exc:
        if attempts + 1 >= settings.delivery_max_attempts:
            reason = f"gave up after {attempts + 1} attempts: {exc.reason}"
            _dead(services, batch, keys, reason, None, "")
            return
        delay = backoff_seconds(
            attempts,
            settings.delivery_backoff_base_seconds,
            settings.delivery_backoff_max_seconds,
            exc.retry_after,
        )
        log.warning(
            "batch %s for org %s: %s; retry in %.1fs", batch.batch_id, org_id, exc.reason, delay
        )
        DELIVERY_BATCHES.labels(org_id, "retry").inc()
        with services.db.transaction() as session:
            settle.retry(session, org_id, batch.batch_id, dt.timedelta(seconds=delay), exc.reason)
    except PermanentDeliveryError as exc:
        _dead(services, batch, keys, f"refused: {exc.reason}", exc.status, exc.answer)
    else:
        with services.db.transaction() as session:
            settle.delivered(session, org_id, batch.batch_id)
        _observe_delivered(outgoing)


def _observe_delivered(outgoing: Outgoing) -> None:
    org_id = outgoing.batch.org_id
    log.info(
        "delivered batch %s: %d operations",
        outgoing.batch.batch_id,
        len(outgoing.batch.operations),
        extra={"request_ids": outgoing.request_ids},
    )
    DELIVERY_BATCHES.labels(org_id, "delivered").inc()
    for op_type, count in Counter(op["type"] for op in outgoing.batch.operations).items():
        DELIVERY_OPERATIONS.labels(org_id, op_type).inc(count)
    now = utcnow()
    since_outbox, since_payload = (
        DELIVERY_LATENCY.labels("outbox"),
        DELIVERY_LATENCY.labels("payload"),
    )
    for source_at, changed_at in outgoing.since:
        since_outbox.observe(max((now - changed_at).total_seconds(), 0))
        if source_at is not None:
            since_payload.observe(max((now - source_at).total_seconds(), 0))


def _dead(
    services: Services,
    batch: Batch,
    keys: list[tuple[str, str]],
    reason: str,
    status: int | None,
    answer: str,
) -> None:
    log.error("batch %s for org %s is a dead letter: %s", batch.batch_id, batch.org_id, reason)
    DELIVERY_BATCHES.labels(batch.org_id, "dead").inc()
    with services.db.transaction() as session:
        settle.dead(
            session, batch.org_id, batch.batch_id, reason, keys, batch.operations, status, answer
        )
