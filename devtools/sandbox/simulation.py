"""Life at a simulated venue: sign-ups, profile edits, points, payments, refunds, list churn.

Every change is made to the sandbox's truth first and then fired as LOKE's webhook, so what a
CRM should end up with is always known. What happens (who, what, how much) comes only from the
seeded `random.Random`; when it happens comes from `clock`, so a fixed clock and the same seed
replay byte for byte the same webhooks.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.sandbox.payloads import (
    STATISTICS_COUNTERS,
    STATISTICS_TIMES,
    customer_event,
    iso,
    make_payment,
    parse_ts,
    payment_event,
    statistics_event,
)
from devtools.sandbox.seeding import FIRST, LAST, random_customer
from devtools.sandbox.server import LokeSandbox

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
LOCATIONS = ({"id": "loc-harbour", "name": "Harbour St"}, {"id": "loc-lane", "name": "Laneway"})
MENU = (("Flat white", 550), ("Banana bread", 650), ("Smashed avo", 1900), ("Negroni", 1800),
        ("Fish tacos", 2400), ("Sparkling water", 400))  # fmt: skip
MS = timedelta(milliseconds=1)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Mix:
    """Relative weights of each kind of event."""

    signups: float = 1
    edits: float = 3
    statistics: float = 3
    payments: float = 2
    refunds: float = 0.5


class Simulator:
    """Makes one organization's customers do things; `start()` runs it at a rate."""

    def __init__(
        self,
        sandbox: LokeSandbox,
        org_id: str,
        rng: random.Random,
        clock: Clock = utc_now,
        mix: Mix | None = None,
        list_ids: Sequence[str] = (),
    ) -> None:
        self.sandbox, self.org_id, self.rng, self.clock = sandbox, org_id, rng, clock
        self.mix = mix or Mix()
        self.list_ids = list(list_ids)
        self._ids = list(sandbox.snapshot(org_id).customers)  # insertion order: deterministic
        self._refundable: list[str] = []
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one event ------------------------------------------------------------------------
    def step(self) -> list[dict[str, Any]]:
        """Make one thing happen; returns the webhook bodies it fired (in firing order)."""
        kinds = ["signup", "edit", "statistics", "payment", "refund"]
        weights = [self.mix.signups, self.mix.edits, self.mix.statistics, self.mix.payments,
                   self.mix.refunds if self._refundable else 0.0]  # fmt: skip
        if not self._ids:
            weights = [1.0, 0.0, 0.0, 0.0, 0.0]
        kind = self.rng.choices(kinds, weights)[0]
        make: Callable[[], list[dict[str, Any]]] = getattr(self, f"_{kind}")
        bodies = make()
        self.counts[kind] += 1
        for body in bodies:
            self.sandbox.emit(self.org_id, body)
        return bodies

    def _signup(self) -> list[dict[str, Any]]:
        now = self.clock()
        customer = random_customer(self.rng, now, now)
        customer["statistics"] = _no_statistics()  # a new member has no history yet
        self.sandbox.upsert_customer(self.org_id, customer)
        self._ids.append(customer["id"])
        return [customer_event("customer.created", self.org_id, customer, self._name())]

    def _edit(self) -> list[dict[str, Any]]:
        customer = self._pick()
        field = self.rng.choice(("firstName", "lastName", "phoneNumber", "hasAgreedToMarketing"))
        if field == "firstName":
            customer[field] = self.rng.choice(FIRST)
        elif field == "lastName":
            customer[field] = self.rng.choice(LAST)
        elif field == "phoneNumber":
            customer[field] = f"+614{self.rng.randrange(10**8):08d}"
        else:
            customer[field] = not customer[field]
        customer["updatedAt"] = iso(self._after(customer["updatedAt"]))
        self.sandbox.upsert_customer(self.org_id, customer)
        return [customer_event("customer.updated", self.org_id, customer, self._name())]

    def _statistics(self) -> list[dict[str, Any]]:
        customer = self._pick()
        stats = customer["statistics"]
        when = iso(self._after(*(stats.get(k) for k in STATISTICS_TIMES)))
        if stats["pointsBalance"] >= 100 and self.rng.random() < 0.3:
            points = self.rng.randrange(50, stats["pointsBalance"] + 1)
            stats["pointsBalance"] -= points
            stats["totalPointsRedeemed"] += points
            stats["lastPointsRedeemedAt"] = when
        else:
            points = self.rng.randrange(5, 120)
            stats["pointsBalance"] += points
            stats["totalPointsEarned"] += points
            stats["lastPointsEarnedAt"] = when
        self.sandbox.upsert_customer(self.org_id, customer)
        return [statistics_event(self.org_id, customer, stats, self._name())]

    def _payment(self) -> list[dict[str, Any]]:
        customer = self._pick()
        stats = customer["statistics"]
        when = self._after(*(stats.get(k) for k in STATISTICS_TIMES))
        items: list[dict[str, Any]] = []
        total = 0
        for n, (name, amount) in enumerate(self.rng.sample(MENU, self.rng.randint(1, 3))):
            quantity = self.rng.randint(1, 2)
            total += amount * quantity
            items.append({"id": f"item-{n}", "name": name, "amount": amount,
                          "quantity": quantity, "type": "product", "options": []})  # fmt: skip
        location = self.rng.choice(LOCATIONS)
        payment_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        payment = make_payment(payment_id, customer, when, total=total, chargedAmount=total,
                               items=items, locationId=location["id"])  # fmt: skip
        self.sandbox.upsert_payment(self.org_id, payment)
        self._refundable.append(payment_id)
        stats["totalSpend"] += total
        stats["pointsBalance"] += total // 100
        stats["totalPointsEarned"] += total // 100
        stats["lastSpentAt"] = stats["lastPointsEarnedAt"] = iso(when)
        self.sandbox.upsert_customer(self.org_id, customer)
        name = self._name()
        return [
            payment_event("payment.completed", self.org_id, payment, location, name),
            statistics_event(self.org_id, customer, stats, name),
        ]

    def _refund(self) -> list[dict[str, Any]]:
        payment_id = self._refundable.pop(self.rng.randrange(len(self._refundable)))
        payment = self.sandbox.payment(self.org_id, payment_id)
        refunded = iso(self._after(payment["completedAt"]))
        payment |= {"refundedAt": refunded, "state": "refunded"}
        self.sandbox.upsert_payment(self.org_id, payment)
        location = next(loc for loc in LOCATIONS if loc["id"] == payment["locationId"])
        return [payment_event("payment.refunded", self.org_id, payment, location, self._name())]

    # -- lists ----------------------------------------------------------------------------
    def churn_lists(self, fraction: float = 0.02) -> None:
        """Move a few people out of and into every list (LOKE sends no webhook for this)."""
        snapshot = self.sandbox.snapshot(self.org_id)
        for list_id in self.list_ids:
            name, members = snapshot.lists[list_id]
            ordered = sorted(members)
            churn = max(1, int(len(ordered) * fraction))
            leaving = set(self.rng.sample(ordered, min(churn, len(ordered))))
            outside = [c for c in self._ids if c not in members]
            joining = self.rng.sample(outside, min(churn, len(outside)))
            kept = [m for m in ordered if m not in leaving]
            self.sandbox.set_list(self.org_id, list_id, name, [*kept, *joining])
        self.counts["list churn"] += 1

    # -- running --------------------------------------------------------------------------
    def start(
        self,
        rate: float,
        max_events: int = 0,
        churn_seconds: float = 0,
        busy_seconds: float = 0,
        quiet_seconds: float = 0,
    ) -> None:
        """From a daemon thread, once the org is subscribed: fire `rate` events a second (up to
        `max_events`, 0 = no limit) and churn the lists every `churn_seconds` (0 = never). With
        `quiet_seconds`, events come in waves: `busy_seconds` of them, then that long without,
        as a venue has rushes (and a CRM can be seen to catch up completely)."""
        self._stop.clear()
        waves = (busy_seconds, quiet_seconds) if quiet_seconds > 0 and busy_seconds > 0 else None
        self._thread = threading.Thread(
            target=self._loop, args=(rate, max_events, churn_seconds, waves), name="simulator",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def events(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind != "list churn")

    def _loop(
        self, rate: float, max_events: int, churn_seconds: float, waves: tuple[float, float] | None
    ) -> None:
        while not self._stop.is_set() and not self.sandbox.subscribed(self.org_id):
            self._stop.wait(0.2)  # LOKE fires nothing before a subscription exists
        started = next_event = time.monotonic()
        next_churn = next_event + churn_seconds
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if rate > 0 and now >= next_event:
                    quiet_left = _quiet_left(now - started, waves)
                    if quiet_left > 0:
                        next_event = now + quiet_left
                    else:
                        if not max_events or self.events() < max_events:
                            self.step()
                        next_event += 1 / rate
                if churn_seconds > 0 and now >= next_churn:
                    if self.list_ids:
                        self.churn_lists()
                    next_churn = now + churn_seconds
            except Exception:  # a bug here must not silently end the demo's live traffic
                log.exception("simulated event failed")
            due = [t for t, on in ((next_event, rate > 0), (next_churn, churn_seconds > 0)) if on]
            self._stop.wait(max(0.0, min(due) - time.monotonic()) if due else 1.0)

    # -- helpers --------------------------------------------------------------------------
    def _pick(self) -> dict[str, Any]:
        customer = self.sandbox.customer(self.org_id, self.rng.choice(self._ids))
        if customer is None:  # only the simulator adds or removes people
            raise RuntimeError("a simulated customer disappeared")
        if customer.get("statistics") is None:
            customer["statistics"] = _no_statistics()
        return customer

    def _after(self, *previous: object) -> datetime:
        """Now, or a millisecond after the latest of `previous` if the clock is behind it:
        LOKE's timestamps for one entity only move forward."""
        moment = self.clock()
        now = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        latest = max((parse_ts(p) for p in previous), default=now)
        return max(now, latest + MS)

    def _name(self) -> str:
        return self.sandbox.org_name(self.org_id)


def _quiet_left(elapsed: float, waves: tuple[float, float] | None) -> float:
    """Seconds until the next busy spell, or 0 while busy."""
    if waves is None:
        return 0.0
    busy, quiet = waves
    phase = elapsed % (busy + quiet)
    return 0.0 if phase < busy else busy + quiet - phase


def _no_statistics() -> dict[str, Any]:
    return dict.fromkeys(STATISTICS_COUNTERS, 0) | dict.fromkeys(STATISTICS_TIMES)
