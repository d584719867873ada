"""`bench.backfill --destination hubspot`: a backfill into the fake HubSpot at HubSpot's pace.

    .venv/bin/python -m bench.backfill --destination hubspot [--quick] [--crm-latency 0.3]

The fake HubSpot runs in a process of its own, answering every request after `--crm-latency`
seconds (300 ms by default) and limiting its token to `--requests-per-ten-seconds` (190, the
Professional and Enterprise allowance) in a rolling 10-second window, with 429s as HubSpot
answers them. The organization is connected through `PUT /api/orgs/<org>` with a `hubspot`
destination of the same allowance and `maxConcurrentRequests` 8; its backfill of N customers
runs on two worker instances.

Contacts/s is measured from the first contact HubSpot holds to the last, by polling the fake's
state; the ceiling is the allowance x 100 contacts a request (1,900/s at 190 per 10 s), which
the service cannot beat: goal >= 0.9x of it, with fewer than 1% of requests answered 429.
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import requests

from app.core.queues import QueueName
from bench.common import (
    BenchStack,
    WorkerSettings,
    bench_stack,
    print_table,
    start_gunicorn,
    start_workers,
    stop_services,
)
from tests.conftest import ADMIN_TOKEN
from tests.support.fake_loke import make_customer
from tests.support.processes import _answers, _wait_until, free_port

TOKEN = "pat-bench-hubspot-token"
ORG = "org-hubspot"
BATCH = 100  # HubSpot's batch limit: one request carries this many contacts
T0 = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC)


@dataclass
class HubSpotRun:
    customers: int
    contacts: int
    first_at: float  # seconds after the PUT
    last_at: float
    requests: int
    rate_limited: int
    max_in_window: int
    dead_letters: int
    by_route: dict[str, int]
    samples: list[tuple[float, int]]  # (seconds after the PUT, contacts held)

    @property
    def steady_rate(self) -> float:
        return self.contacts / (self.last_at - self.first_at) if self.last_at > self.first_at else 0

    def middle_rate(self) -> float:
        """Contacts/s from 10% to 90% of them: the pace without the ramps at either end."""
        low = next((s for s in self.samples if s[1] >= self.customers * 0.1), None)
        high = next((s for s in self.samples if s[1] >= self.customers * 0.9), None)
        if low is None or high is None or high[0] <= low[0]:
            return 0.0
        return (high[1] - low[1]) / (high[0] - low[0])


def start_fake_hubspot(bench: BenchStack, latency: float, per_ten_seconds: int) -> str:
    port = free_port()
    argv = [sys.executable, "-m", "devtools.hubspot", "--port", str(port), "--token", TOKEN,
            "--per-ten-seconds", str(per_ten_seconds),
            "--latency", str(latency), str(latency)]  # fmt: skip
    service = bench.stack._start("fake-hubspot", argv)
    url = f"http://127.0.0.1:{port}"
    _wait_until(lambda: _answers(f"{url}/_fake/state"), service, 30)
    return url


def fake_state(url: str) -> dict[str, Any]:
    answer = requests.get(f"{url}/_fake/state", timeout=30)
    answer.raise_for_status()
    state: dict[str, Any] = answer.json()
    return state


def contacts_held(state: dict[str, Any]) -> int:
    return sum(a["records"]["contacts"] for a in state["accounts"].values())


def run(bench: BenchStack, hubspot_url: str, n: int, per_ten_seconds: int, in_flight: int,
        workers: WorkerSettings) -> HubSpotRun:  # fmt: skip
    services = start_workers(bench.stack, workers, "hubspot")
    try:
        bench.loke.add_org(ORG)
        destination = {"type": "hubspot", "accessToken": TOKEN, "baseUrl": hubspot_url,
                       "requestsPerTenSeconds": per_ten_seconds,
                       "maxConcurrentRequests": in_flight}  # fmt: skip
        began = time.monotonic()
        answer = requests.put(f"{bench.web_url}/api/orgs/{ORG}",
                              json={"destination": destination}, timeout=30,
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip
        if answer.status_code != 201:
            raise RuntimeError(f"connecting {ORG}: {answer.status_code} {answer.text}")
        first_at = last_at = 0.0
        samples: list[tuple[float, int]] = []
        deadline = began + 120 + n / (per_ten_seconds * BATCH / 10 * 0.5)
        while True:
            held = contacts_held(fake_state(hubspot_url))
            now = time.monotonic() - began
            samples.append((now, held))
            if held and not first_at:
                first_at = now
            if held >= n or time.monotonic() > deadline:
                last_at = now
                break
            time.sleep(0.1)
        time.sleep(1.0)  # anything still on its way
        state = fake_state(hubspot_url)
    finally:
        stop_services(bench.stack, services)
    with psycopg.connect(bench.database_url) as connection:
        dead = connection.execute("SELECT count(*) FROM dead_letters").fetchone()
    rate_limited = sum(state["requests"].get("rateLimited", {}).values())
    return HubSpotRun(n, contacts_held(state), first_at, last_at, state["requests"]["total"],
                      rate_limited, state["maxInWindow"], int(dead[0]) if dead else 0,
                      state["requests"]["byRoute"], samples)  # fmt: skip


def main(args: argparse.Namespace) -> int:
    """Seed, backfill into the fake HubSpot, report."""
    n = args.limited or (20_000 if args.quick else 60_000)
    latency = args.crm_latency or 0.3
    per_ten_seconds = args.requests_per_ten_seconds
    queues = (QueueName.BACKFILL, QueueName.DELIVERY, QueueName.EVENTS)
    workers = WorkerSettings(args.workers, args.pool, args.concurrency, queues)

    with bench_stack("backfill-hubspot") as bench:
        bench.loke.page_size = args.page_size
        bench.loke.latency = args.loke_latency
        print(f"{n:,} customers; fake HubSpot (own process) answering in {latency:g} s, "
              f"{per_ten_seconds} requests per rolling 10 s; LOKE pages of {args.page_size:,} "
              f"in {args.loke_latency:g} s; workers: {workers.describe()}")  # fmt: skip
        start_gunicorn(bench.stack, "web", "app.wsgi:app", bench.port, 2)
        hubspot_url = start_fake_hubspot(bench, latency, per_ten_seconds)
        bench.loke.set_customers(ORG, (make_customer(f"H{i:07d}", T0 + dt.timedelta(seconds=i))
                                       for i in range(n)))  # fmt: skip
        result = run(bench, hubspot_url, n, per_ten_seconds, args.in_flight, workers)
    ceiling = per_ten_seconds / 10 * BATCH
    print()
    print_table(
        ["customers", "contacts held", "first at s", "last at s", "contacts/s", "requests",
         "429s", "most in 10 s", "dead letters"],
        [[result.customers, result.contacts, result.first_at, result.last_at,
          result.steady_rate, result.requests, result.rate_limited, result.max_in_window,
          result.dead_letters]],
    )  # fmt: skip
    print()
    print_table(["requests by route", "count"], sorted(result.by_route.items()))
    middle = result.middle_rate()
    print(f"contacts/s from 10% to 90% of them = {middle:,.0f}"
          f" ({middle / ceiling:.2f}x of the ceiling; the pace allows 0.95x)")  # fmt: skip
    share = result.rate_limited / result.requests if result.requests else 0.0
    print(f"\ncontacts/s first to last contact = {result.steady_rate:,.0f} vs the ceiling"
          f" {per_ten_seconds}/10 s x {BATCH} = {ceiling:,.0f}/s; ratio ="
          f" {result.steady_rate / ceiling:.2f} (goal >= 0.90)")  # fmt: skip
    print(f"requests answered 429: {result.rate_limited} of {result.requests} = {share:.2%}"
          " (goal < 1%)")  # fmt: skip
    print(f"every customer a contact, no dead letters: "
          f"{'yes' if result.contacts == n and not result.dead_letters else 'NO'}")  # fmt: skip
    return 0
