"""Sending one organization's outbox to its destination, batch after batch, within its limits.

Up to `maxConcurrentRequests` of these run at once for one organization, on any machine: a
sender that claims a batch while more is claimable kicks another sender, which does the same,
until as many batches are in flight as the destination allows. Each sender claims, sends and
settles in turn, and no transaction is held open while a batch is on the wire. A sender gives
its worker back after a while (the queue interleaves organizations) and when it must wait.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from app.core import logs
from app.core.kicks import Kick
from app.core.services import Services
from app.core.task_names import DELIVERY_FLUSH
from app.delivery import claims, destinations, transmit
from app.delivery.claims import Pace
from app.delivery.destinations.base import Batch, Destination, DestinationContext
from app.delivery.operations import build_operations
from app.store.db import utcnow
from app.store.models import Organization

log = logging.getLogger(__name__)

SLEEP_WITHIN_TASK = 1.0  # waits shorter than this are slept; longer ones become a countdown
TIME_BUDGET = 10.0  # seconds a sender sends before it hands over to a fresh task


@dataclass
class FlushResult:
    """What one flush did, and when the organization has work again (if it has)."""

    batches: int = 0
    operations: int = 0
    resume_in: float | None = None  # seconds until this organization has work again


def flush_org(
    services: Services, org_id: str, sent_by: str = Kick.NOW, time_budget: float = TIME_BUDGET
) -> FlushResult:
    """Deliver what is pending for one organization; schedule itself again if work remains."""
    services.kicks.started(DELIVERY_FLUSH, org_id, sent_by=sent_by)
    with logs.context(org_id=org_id):
        result = FlushResult()
        target = _target(services, org_id)
        if target is not None:
            _flush(services, org_id, *target, time_budget, result)
        if result.resume_in is not None:
            services.kicks.kick_later(DELIVERY_FLUSH, org_id, countdown=result.resume_in)
        return result


def _target(services: Services, org_id: str) -> tuple[Destination, Pace] | None:
    """The organization's destination and how it may be sent to; None if not connected."""
    with services.db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None or not org.connected or not org.destination:
            return None
        raw, secret_enc = dict(org.destination), org.destination_secret_enc
    config = destinations.parse_config(raw)
    secret = services.box.decrypt(secret_enc or "")
    settings = services.settings
    context = DestinationContext(
        org_id, settings.delivery_timeout_seconds, services.http, services.db, settings
    )
    destination = destinations.build(config, secret, context)
    pace = Pace(
        batch_size=config.batch_size,
        max_in_flight=config.max_concurrent_requests,
        account=destination.account,
        seconds_per_request=config.seconds_per_request(),
        daily_limit=config.daily_requests(),
        time_zone=config.day_zone(),
    )
    return destination, pace


def _flush(
    services: Services,
    org_id: str,
    destination: Destination,
    pace: Pace,
    time_budget: float,
    result: FlushResult,
) -> None:
    lease = dt.timedelta(seconds=services.settings.delivery_lease_seconds)
    deadline = time.monotonic() + time_budget
    while True:
        if time.monotonic() >= deadline:
            result.resume_in = 0
            return
        with services.db.transaction() as session:
            claim = claims.claim_batch(session, org_id, pace, lease)
            if isinstance(claim, claims.Claimed):
                keyed = build_operations(session, org_id, claim.entries)
                charged = destination.requests_for([op for _, op in keyed])
                claims.charge(session, pace, charged)
                sibling = claims.batches_in_flight(
                    session, org_id, utcnow()
                ) < pace.max_in_flight and claims.has_claimable(session, org_id)
        if isinstance(claim, claims.Wait):
            wait = (claim.until - utcnow()).total_seconds()
            if wait <= SLEEP_WITHIN_TASK:
                time.sleep(max(wait, 0))
                continue
            result.resume_in = wait
            return
        if isinstance(claim, claims.Full):
            return  # the senders of the batches in flight go on when they are answered
        if isinstance(claim, claims.Idle):
            if claim.next_due is not None:
                result.resume_in = max((claim.next_due - utcnow()).total_seconds(), 0.05)
            return
        if sibling:
            services.kicks.kick(DELIVERY_FLUSH, org_id)  # another sender joins in
        outgoing = transmit.Outgoing(
            Batch(claim.batch_id, org_id, [op for _, op in keyed]),
            lease=claim.lease,
            keys=[key for key, _ in keyed],
            settled_keys=[(e.kind, e.key) for e in claim.entries],
            attempts={(e.kind, e.key): e.attempts for e in claim.entries},
            since=[(e.source_at, e.changed_at) for e in claim.entries],
            request_ids=sorted({e.request_id for e in claim.entries if e.request_id}),
            pace=pace,
            send_at=claim.send_at,
            requests_charged=charged,
        )
        transmit.send(services, destination, outgoing)
        result.batches += 1
        result.operations += len(outgoing.batch.operations)
