"""`loke-sync sandbox`: a simulated LOKE on a local port, until Ctrl-C.

Point a service at it with the four variables it prints; connect the organization it seeded and
its webhooks start arriving.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from devtools.sandbox.firer import DeliveryStyle, RetrySchedule
from devtools.sandbox.seeding import seed_org
from devtools.sandbox.server import LokeSandbox
from devtools.sandbox.simulation import Simulator


@dataclass(frozen=True)
class Activity:
    """What the simulated organization looks like and does (shared with `loke-sync demo`)."""

    seed: int = 1
    customers: int = 2000
    rate: float = 5.0  # events a second, once subscribed
    max_events: int = 0  # 0: no limit
    busy_seconds: float = 20.0  # events come in waves: this long busy ...
    quiet_seconds: float = 10.0  # ... then this long quiet (0: no waves)
    list_churn_seconds: float = 150.0  # 0: lists never change
    duplicates: float = 0.05
    out_of_order: float = 0.1
    lost_payments: float = 0.0  # payment webhooks never delivered (reconciliation heals them)
    retry_base_seconds: float = 10.0

    def sandbox(self, client_id: str, client_secret: str, port: int) -> LokeSandbox:
        """An unstarted sandbox delivering webhooks in this style."""
        style = DeliveryStyle(
            duplicate_ratio=self.duplicates,
            out_of_order_ratio=self.out_of_order,
            lost_payment_ratio=self.lost_payments,
        )
        retry = RetrySchedule(base_seconds=self.retry_base_seconds)
        return LokeSandbox(
            client_id, client_secret, port=port, style=style, retry=retry, seed=self.seed
        )

    def populate(
        self, sandbox: LokeSandbox, org_id: str, name: str, lists: Sequence[tuple[str, int]]
    ) -> tuple[dict[str, str], random.Random]:
        """Seed the organization; returns its {list name: id} and the rng to simulate with."""
        # Made-up people, reproducible on purpose (nosec B311: not for secrets).
        rng = random.Random(self.seed)  # nosec B311
        return seed_org(sandbox, org_id, name, self.customers, lists, rng), rng

    def simulate(
        self, sandbox: LokeSandbox, org_id: str, rng: random.Random, list_ids: Sequence[str]
    ) -> Simulator:
        """Start the organization's life (it waits for a subscription before firing)."""
        simulator = Simulator(sandbox, org_id, rng, list_ids=list_ids)
        self.start(simulator)
        return simulator

    def start(self, simulator: Simulator) -> None:
        """Set an existing simulator going in this activity's rhythm."""
        simulator.start(self.rate, self.max_events, self.list_churn_seconds, self.busy_seconds,
                        self.quiet_seconds)  # fmt: skip


def serve(
    activity: Activity,
    port: int,
    client_id: str,
    client_secret: str,
    org_id: str,
    org_name: str,
    lists: Sequence[tuple[str, int]],
    echo: Callable[[str], Any] = print,
) -> None:
    """Run the sandbox until SIGINT or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sandbox = activity.sandbox(client_id, client_secret, port)
    list_ids, rng = activity.populate(sandbox, org_id, org_name, lists)
    sandbox.start()
    simulator = activity.simulate(sandbox, org_id, rng, list(list_ids.values()))
    try:
        echo(f"LOKE sandbox on {sandbox.url}: organization {org_id} ({org_name}),"
             f" {activity.customers:,} customers")  # fmt: skip
        for name, list_id in list_ids.items():
            echo(f"  list {list_id}: {name}")
        echo("Point the service at it:")
        variables = {"LOKE_API_URL": sandbox.url, "LOKE_AUTH_URL": sandbox.url,
                     "LOKE_CLIENT_ID": client_id, "LOKE_CLIENT_SECRET": client_secret}  # fmt: skip
        for name, value in variables.items():
            echo(f"  export {name}={value}")
        echo(f"Webhooks start once a subscription exists ({activity.rate:g}/s). Ctrl-C stops.")
        stop.wait()
    finally:
        simulator.stop()
        sandbox.stop()
