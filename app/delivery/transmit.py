"""Sending one claimed batch and settling its entries by the CRM's answer.

While the batch is on the wire its lease is renewed, so no other batch can carry its customers
however long the CRM takes; the send itself has a total deadline. An answer settles entry by
entry: applied, retried later (a bounded number of times), or refused (a dead letter of its
own). A CRM that does not take the batch at all pauses the destination, spending no entry's
attempts: an outage of any length ends in delivery. A 429 pauses the whole CRM account.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from app.activity import minutes
from app.core.backoff import backoff_seconds
from app.core.metrics import DELIVERY_BATCHES, DELIVERY_LATENCY, DELIVERY_OPERATIONS
from app.core.services import Services
from app.delivery import claims, settle
from app.delivery.destinations.base import (
    Batch,
    BatchResult,
    CredentialsRejected,
    Destination,
    Outcome,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from app.store.db import utcnow

log = logging.getLogger(__name__)

SETTLE_ATTEMPTS = 4  # a settle lost to a passing database hiccup would re-send the batch
T = TypeVar("T")


@dataclass(frozen=True)
class Outgoing:
    """A claimed batch on its way: the operations, the entry of each, and what settling and
    metrics need."""

    batch: Batch
    lease: str
    keys: list[tuple[str, str]]  # the entry of each operation, in the batch's order
    settled_keys: list[tuple[str, str]]  # every entry the claim leased
    attempts: dict[tuple[str, str], int]  # the CRM's earlier "retry later" answers per entry
    since: list[tuple[dt.datetime | None, dt.datetime]]  # (LOKE's time, entered the outbox)
    request_ids: list[str]  # the webhooks whose changes this batch carries
    pace: claims.Pace  # the CRM account it spends, and how
    send_at: dt.datetime  # its slot in the account's allowance
    requests_charged: int  # what the claim took of it


def send(services: Services, destination: Destination, outgoing: Outgoing) -> None:
    """Send the batch (unless every entity in it was purged meanwhile) and settle it."""
    settings = services.settings
    batch = outgoing.batch
    try:
        with _renewed(services, batch.org_id, outgoing.lease):
            time.sleep(max((outgoing.send_at - utcnow()).total_seconds(), 0))
            result = (
                destination.send(batch, settings.delivery_timeout_seconds)
                if batch.operations
                else BatchResult()
            )
    except RetryableDeliveryError as exc:
        _not_taken(services, outgoing, exc)
    except PermanentDeliveryError as exc:
        _refused(services, outgoing, f"refused: {exc.reason}", exc.status, exc.answer)
    else:
        _answered(services, outgoing, result)


def _refused(
    services: Services, outgoing: Outgoing, reason: str, status: int | None, answer: str
) -> None:
    batch = outgoing.batch
    log.error("batch %s for org %s is a dead letter: %s", batch.batch_id, batch.org_id, reason)
    DELIVERY_BATCHES.labels(batch.org_id, "dead").inc()

    def refuse(session: Session) -> None:
        settle.refused(
            session, batch.org_id, outgoing.lease, batch.batch_id, outgoing.settled_keys,
            batch.operations, reason, status, answer,
        )  # fmt: skip
        minutes.count_batch(session, batch.org_id, delivered=0, refused=len(batch.operations))

    _settling(services, refuse)


def _not_taken(services: Services, outgoing: Outgoing, exc: RetryableDeliveryError) -> None:
    settings = services.settings
    org_id, lease = outgoing.batch.org_id, outgoing.lease
    if exc.throttled:
        pause = backoff_seconds(
            0, settings.delivery_backoff_base_seconds, settings.delivery_backoff_max_seconds,
            exc.retry_after,
        )  # fmt: skip
        until = exc.until or utcnow() + dt.timedelta(seconds=pause)
        pause = (until - utcnow()).total_seconds()
        log.warning("CRM account %s throttled (%s); paused %.1fs", outgoing.pace.account,
                    exc.reason, pause)  # fmt: skip
        DELIVERY_BATCHES.labels(org_id, "throttled").inc()

        def throttle(session: Session) -> None:
            settle.throttled(session, org_id, lease, exc.reason)
            claims.throttle(session, outgoing.pace.account, until, exc.reason)
            minutes.count_paused(session, org_id)  # last: the minute's row is a hot one

        _settling(services, throttle)
        return

    def pause_destination(session: Session) -> dt.datetime:
        state = claims.lock_state(session, org_id)
        pause = backoff_seconds(
            state.consecutive_failures, settings.delivery_backoff_base_seconds,
            settings.delivery_backoff_max_seconds, exc.retry_after,
        )  # fmt: skip
        why = "credentials" if isinstance(exc, CredentialsRejected) else "unreachable"
        next_try = settle.unreachable(
            session, org_id, lease, dt.timedelta(seconds=pause), exc.reason, why
        )
        minutes.count_paused(session, org_id)
        return next_try

    next_try = _settling(services, pause_destination)
    log.warning("batch %s for org %s: %s; delivery paused, next try at %s",
                outgoing.batch.batch_id, org_id, exc.reason, next_try.isoformat())  # fmt: skip
    DELIVERY_BATCHES.labels(org_id, "retry").inc()


def _answered(services: Services, outgoing: Outgoing, result: BatchResult) -> None:
    settings = services.settings
    batch = outgoing.batch
    retry: list[tuple[str, str]] = []
    dead: list[tuple[int, str]] = []  # (operation's index, reason)
    for index, (outcome, reason) in sorted(result.exceptions.items()):
        tries = outgoing.attempts.get(outgoing.keys[index], 0) + 1
        if outcome is Outcome.RETRY and tries < settings.delivery_max_attempts:
            retry.append(outgoing.keys[index])
        else:
            gave_up = f"gave up after {tries} attempts: {reason}"
            dead.append((index, reason if outcome is Outcome.REJECTED else gave_up))
    tries = max((outgoing.attempts.get(key, 0) for key in retry), default=0)
    delay = backoff_seconds(
        tries, settings.delivery_backoff_base_seconds, settings.delivery_backoff_max_seconds
    )

    reasons = sorted({reason for _, reason in result.exceptions.values()})
    error = "; ".join(reasons)[:500] or None

    extra = (result.requests_made or 0) - outgoing.requests_charged

    def settle_all(session: Session) -> None:
        settle.answered(
            session, batch.org_id, outgoing.lease, retry, dt.timedelta(seconds=delay),
            [outgoing.keys[index] for index, _ in dead], error,
        )  # fmt: skip
        for index, reason in dead:
            settle.dead_letter(
                session, batch.org_id, "operation", f"refused: {reason}",
                [outgoing.keys[index]], [batch.operations[index]], batch.batch_id,
            )  # fmt: skip
        taken = len(batch.operations) - len(result.exceptions)
        minutes.count_batch(session, batch.org_id, taken, refused=len(dead), retried=len(retry))

    _settling(services, settle_all)
    if extra > 0:
        # Lookups and conflicts took more requests than the claim reserved. A transaction of
        # its own: a settle that held the account's lock would wait for the organization's
        # state behind a claim that holds that state and waits for the account.
        with services.db.transaction() as session:
            claims.charge(session, outgoing.pace, extra)
    applied = set(range(len(batch.operations))) - set(result.exceptions)
    _observe(outgoing, applied, retried=len(retry), dead=len(dead))


def _observe(outgoing: Outgoing, applied: set[int], retried: int, dead: int) -> None:
    batch = outgoing.batch
    log.info(
        "delivered batch %s: %d operations (%d to retry, %d refused)",
        batch.batch_id, len(applied), retried, dead,
        extra={"request_ids": outgoing.request_ids},
    )  # fmt: skip
    DELIVERY_BATCHES.labels(batch.org_id, "delivered").inc()
    if dead:
        DELIVERY_BATCHES.labels(batch.org_id, "dead").inc(dead)
    types = Counter(batch.operations[i]["type"] for i in applied)
    for op_type, count in types.items():
        DELIVERY_OPERATIONS.labels(batch.org_id, op_type).inc(count)
    now = utcnow()
    since_outbox, since_payload = (
        DELIVERY_LATENCY.labels("outbox"),
        DELIVERY_LATENCY.labels("payload"),
    )
    for source_at, changed_at in outgoing.since:
        since_outbox.observe(max((now - changed_at).total_seconds(), 0))
        if source_at is not None:
            since_payload.observe(max((now - source_at).total_seconds(), 0))


def _settling(services: Services, work: Callable[[Session], T]) -> T:
    """Run a settle in a transaction of its own, again if the database was briefly lost: the
    CRM has answered, and a settle given up leaves the batch to be sent again (under the same
    Idempotency-Key) only once its lease has run out."""
    for attempt in range(SETTLE_ATTEMPTS):
        try:
            with services.db.transaction() as session:
                return work(session)
        except OperationalError:
            if attempt + 1 == SETTLE_ATTEMPTS:
                raise
            log.warning("settling a batch failed; trying again", exc_info=True)
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


@contextmanager
def _renewed(services: Services, org_id: str, lease: str) -> Iterator[None]:
    """Keep the batch's lease alive while it is on the wire (a third of the lease, each time)."""
    seconds = services.settings.delivery_lease_seconds
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(seconds / 3):
            try:
                with services.db.transaction() as session:
                    settle.renew(session, org_id, lease, utcnow() + dt.timedelta(seconds=seconds))
            except SQLAlchemyError:
                log.warning("could not renew the lease of a batch in flight", exc_info=True)

    renewer = threading.Thread(target=renew, name="lease-renewer", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
