"""Fires signed webhooks the way LOKE does: late, sometimes twice, in any order, with retries.

loke-api.md: a delivery fails when no response comes or the status is >= 500, and LOKE tries
up to 5 more times, backing off 10 s, 20 s, 40 s, ... A 4xx is not retried. The schedule's base
is a parameter so tests can watch the whole back-off in a fraction of a second.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import requests

from devtools.sandbox.signing import SIGNATURE_HEADER, sign


@dataclass(frozen=True)
class RetrySchedule:
    """LOKE's: `retries` more attempts after the first, waiting base, 2 x base, 4 x base ..."""

    retries: int = 5
    base_seconds: float = 10.0

    def delay(self, retry: int) -> float:
        """Seconds before retry number `retry` (1-based)."""
        return self.base_seconds * float(2 ** (retry - 1))


@dataclass(frozen=True)
class DeliveryStyle:
    """How deliveries look from the receiving end. Ratios of 0 switch a behaviour off."""

    min_delay: float = 0.05
    max_delay: float = 0.5
    duplicate_ratio: float = 0.05  # the same body delivered a second time
    out_of_order_ratio: float = 0.1  # held back long enough for later events to overtake it
    out_of_order_delay: float = 3.0
    # Payment webhooks LOKE gives up on for good (its retries end within minutes): only a
    # backfill or the reconciliation can bring these payments and refunds.
    lost_payment_ratio: float = 0.0

    def plan(self, rng: random.Random) -> list[float]:
        """Delays (seconds from now) of each delivery of one event: one, or two for a duplicate."""
        first = rng.uniform(self.min_delay, self.max_delay)
        if rng.random() < self.out_of_order_ratio:
            first += rng.uniform(self.out_of_order_delay / 3, self.out_of_order_delay)
        delays = [first]
        if rng.random() < self.duplicate_ratio:
            delays.append(first + rng.uniform(0.2, 2.0))
        return delays

    def lost(self, event: str, rng: random.Random) -> bool:
        """Whether this event's webhook never arrives at all."""
        return (
            event.startswith("payment.")
            and self.lost_payment_ratio > 0
            and rng.random() < self.lost_payment_ratio
        )


IMMEDIATE = DeliveryStyle(0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass
class Delivery:
    """One webhook body on its way to one subscription, with every attempt's answer."""

    url: str
    body: bytes
    signature: str
    event: str
    attempts: list[tuple[float, int | None]] = field(default_factory=list)  # (monotonic, status)
    outcome: str = "pending"  # delivered (< 400), refused (4xx), failed (retries exhausted)


class WebhookFirer:
    """A few daemon threads POSTing due deliveries from one time-ordered queue."""

    def __init__(
        self,
        schedule: RetrySchedule | None = None,
        timeout: float = 10.0,
        workers: int = 4,
        keep: int = 2000,
    ) -> None:
        self.schedule = schedule or RetrySchedule()
        self.timeout = timeout
        self._workers = workers
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._stopping = False
        self.counts: Counter[str] = Counter()  # see _COUNTS
        self.recent: deque[Delivery] = deque(maxlen=keep)

    def fire(self, url: str, body: bytes, secret: str, event: str, delay: float = 0.0) -> Delivery:
        """Queue one delivery of `body`, signed with `secret`, `delay` seconds from now."""
        delivery = Delivery(url, body, sign(body, secret), event)
        with self._cond:
            self._start_locked()
            self.counts["fired"] += 1
            self.recent.append(delivery)
            self._push_locked(time.monotonic() + delay, delivery)
        return delivery

    def pending(self) -> int:
        """Deliveries waiting for their time or being attempted right now."""
        with self._cond:
            return len(self._queue) + self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending (retries included); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        """Stop attempting; queued deliveries are dropped (LOKE's outbox lives with LOKE)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 1)
        with self._cond:
            self._threads.clear()
            self._queue.clear()
            self._stopping = False

    def _start_locked(self) -> None:
        if self._threads:
            return
        for n in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"webhook-firer-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _push_locked(self, due: float, delivery: Delivery) -> None:
        heapq.heappush(self._queue, (due, next(self._seq), delivery))
        self._cond.notify()

    def _next(self) -> Delivery | None:
        with self._cond:
            while not self._stopping:
                if self._queue and self._queue[0][0] <= time.monotonic():
                    self._busy += 1
                    return heapq.heappop(self._queue)[2]
                wait = self._queue[0][0] - time.monotonic() if self._queue else None
                self._cond.wait(wait)
            return None

    def _work(self) -> None:
        with requests.Session() as session:
            while (delivery := self._next()) is not None:
                try:
                    self._attempt(session, delivery)
                finally:
                    with self._cond:
                        self._busy -= 1

    def _attempt(self, session: requests.Session, delivery: Delivery) -> None:
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: delivery.signature}
        status: int | None
        try:
            status = session.post(
                delivery.url, data=delivery.body, headers=headers, timeout=self.timeout
            ).status_code
        except requests.RequestException:
            status = None  # no response: LOKE counts it as failed and retries
        with self._cond:
            delivery.attempts.append((time.monotonic(), status))
            self.counts["attempts"] += 1
            if status is not None and status < 500:
                delivery.outcome = "delivered" if status < 400 else "refused"
                self.counts[delivery.outcome] += 1
            elif len(delivery.attempts) <= self.schedule.retries:
                self.counts["retries"] += 1
                wait = self.schedule.delay(len(delivery.attempts))
                self._push_locked(time.monotonic() + wait, delivery)
            else:
                delivery.outcome = "failed"
                self.counts["failed"] += 1

    def stats(self) -> dict[str, Any]:
        """Counters for the demo page and tests."""
        with self._cond:
            return {**{k: self.counts[k] for k in _COUNTS}, "pending": len(self._queue)}


_COUNTS = ("fired", "attempts", "retries", "delivered", "refused", "failed")
