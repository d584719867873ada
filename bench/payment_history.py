"""`bench.backfill`'s payment history runs: payments/s from the fake LOKE into the CRM against
GETting the same pages, and worker memory for a big against a small history.

An organization of 1,000 customers whose `paymentHistorySince` is null (every payment) is
connected; its customers take a page, then its N payments (newest change first, pages of 1000)
are read, applied and delivered. Payments/s = N / (the moment the CRM holds every payment - the
moment the run turned to payments). Baseline: every payment page GET with a token over one
session, following `X-Next-Page`, no parsing. Goal (issue 18): >= 0.5x; worker peak RSS of
200,000 payments - of 20,000 < 50 MB.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass

import requests

from bench.common import (
    CRM_SECRET,
    BenchStack,
    RssSampler,
    WorkerSettings,
    start_workers,
    stop_services,
)
from tests.conftest import ADMIN_TOKEN, LOKE_CLIENT_ID, LOKE_CLIENT_SECRET
from tests.support.fake_loke import FakeLoke, make_customer, make_payment

NOW = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)
CUSTOMERS = 1000
MB_KB = 1024  # kB per MB


@dataclass
class PaymentRun:
    label: str
    payments: int
    seconds: float  # the run turned to payments -> the CRM holds every payment (nan: never)
    delivered: int
    peak_rss_mb: float

    @property
    def rate(self) -> float:
        return self.payments / self.seconds


def seed(loke: FakeLoke, org: str, n: int) -> None:
    """1,000 customers and `n` payments of theirs, a second apart, every tenth refunded."""
    people = [make_customer(f"{org}-C{i:04d}", NOW) for i in range(CUSTOMERS)]
    loke.set_customers(org, people)
    loke.set_payments(org, (
        make_payment(f"{org}-P{i:07d}", people[i % CUSTOMERS], NOW - dt.timedelta(seconds=i),
                     **({"refundedAt": NOW, "state": "refunded"} if i % 10 == 0 else {}))
        for i in range(n)
    ))  # fmt: skip


def get_all_pages(loke: FakeLoke, org: str) -> float:
    """Seconds to GET every payment page as the service walks them (token not timed)."""
    with requests.Session() as http:
        token = http.post(f"{loke.url}/token", timeout=10, data={
            "grant_type": "client_credentials", "client_id": LOKE_CLIENT_ID,
            "client_secret": LOKE_CLIENT_SECRET}).json()["access_token"]  # fmt: skip
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        url: str | None = f"{loke.url}/organizations/{org}/payments?sort=updated"
        began = time.perf_counter()
        while url is not None:
            answer = http.get(url, headers=headers, timeout=60)
            answer.raise_for_status()
            url = answer.headers.get("X-Next-Page")
        return time.perf_counter() - began


def run(bench: BenchStack, sink_url: str, workers: WorkerSettings, label: str, org: str,
        n: int) -> PaymentRun:  # fmt: skip
    """Connect the organization (every payment), wait until the CRM holds them all."""
    services = start_workers(bench.stack, workers, f"payments-{label}")
    pids = [s.process.pid for s in services]
    try:
        with RssSampler(pids) as sampler:
            bench.loke.add_org(org)
            body = {"destination": {"type": "http", "url": sink_url, "secret": CRM_SECRET,
                                    "batchSize": 1000, "maxRequestsPerSecond": 1000},
                    "paymentHistorySince": None}  # fmt: skip
            answer = requests.put(f"{bench.web_url}/api/orgs/{org}", json=body, timeout=30,
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip
            answer.raise_for_status()
            turned = math.nan
            delivered = 0
            deadline = time.monotonic() + 120 + n / 200
            while time.monotonic() < deadline:
                if math.isnan(turned) and _phase(bench, org) == "payments":
                    turned = time.monotonic()
                stats = requests.get(
                    f"{sink_url}/stats", params={"org": org, "full": "1"}, timeout=30
                ).json()
                delivered = int(stats["operations"].get("payment.upsert", 0))
                if delivered >= n:
                    break
                time.sleep(0.1)
            done = time.monotonic()
    finally:
        stop_services(bench.stack, services)
    seconds = done - turned if delivered >= n else math.nan
    return PaymentRun(label, n, seconds, delivered, max(sampler.peak_kb.values()) / MB_KB)


def _phase(bench: BenchStack, org: str) -> str | None:
    answer = requests.get(f"{bench.web_url}/api/orgs/{org}", timeout=10,
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip
    backfill = answer.json().get("backfill") or {}
    phase: str | None = backfill.get("phase")
    return phase


def report(runs: list[PaymentRun], get_rate: float) -> None:
    """The payment lines of bench.backfill's report."""
    big, small = runs
    for r in runs:
        print(f"payments {r.label:<6} {r.rate:,.0f} payments/s ({r.payments:,}; delivered"
              f" {r.delivered:,}); worker peak RSS {r.peak_rss_mb:,.1f} MB")  # fmt: skip
    print(f"GET payment pages, no processing {get_rate:,.0f} payments/s")
    print(f"ratio payments/GET = {big.rate / get_rate:.2f} (goal >= 0.50)")
    growth = big.peak_rss_mb - small.peak_rss_mb
    print(f"worker peak RSS: {big.payments:,} payments {big.peak_rss_mb:,.1f} MB,"
          f" {small.payments:,} {small.peak_rss_mb:,.1f} MB; difference = {growth:+.1f} MB"
          " (goal < 50)")  # fmt: skip
