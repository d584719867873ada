"""Backfill customers/s from the fake LOKE into a local CRM vs GETting the same pages, same run;
worker peak RSS for a big vs a small org; throughput under a binding CRM rate limit, and with
several batches in flight to a CRM that takes its time.

    .venv/bin/python -m bench.backfill [--quick] [--crm-latency 0.3] [--loke-latency 0.1]

Baseline: every customer page of the big organization GET from the same FakeLoke, following
`X-Next-Page` with a client-credentials token over one `requests.Session`, as the service does,
with no parsing (timed before and after the backfill; the mean is used). Backfill: workers
already running, the organization connected through `PUT /api/orgs/<org>` (which starts the
backfill); customers/s = N / (time the CRM answered the batch completing all N customers -
time of the PUT). Goals (from the issues): backfill/GET >= 0.5, for the big organization and
for the small one after it; worker peak RSS big - small < 50 MB; under a binding
`maxRequestsPerSecond`, delivered/s >= 0.9x limit x batchSize; with `--crm-latency` L, an
organization sending batches of 100 with `maxConcurrentRequests` C delivers >= 0.8x C x 100 / L,
or of the CPU floor (the same run against a CRM that answers at once) when that is lower.
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests

from app.core.queues import QueueName
from bench import backfill_hubspot, payment_history
from bench.common import (
    CRM_SECRET,
    BenchStack,
    RssSampler,
    WorkerSettings,
    bench_stack,
    connect_org,
    print_table,
    start_gunicorn,
    start_workers,
    stop_services,
    tree_hwm_kb,
)
from tests.conftest import LOKE_CLIENT_ID, LOKE_CLIENT_SECRET
from tests.support.fake_loke import FakeLoke, make_customer
from tests.support.processes import _answers, _wait_until, free_port

T0 = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC)
MB = 1024  # kB per MB


@dataclass
class GetRun:
    customers: int
    pages: int
    megabytes: float
    seconds: float

    @property
    def rate(self) -> float:
        return self.customers / self.seconds


@dataclass
class BackfillRun:
    label: str
    customers: int
    batch_size: int
    rps: float
    seconds: float  # PUT /api/orgs -> CRM answer completing all customers (nan: never)
    connect_seconds: float  # PUT -> its answer
    first_batch_seconds: float  # PUT -> first CRM answer
    pages_done_seconds: float  # PUT -> backfill run finished (all pages applied)
    steady_rate: float  # customers/s from the first to the last CRM answer
    pages: int
    batches: int
    per_customer: dict[int, int]  # contact.upserts per customer -> customers
    other_operations: int  # operations other than contact.upsert
    duplicates: int
    crm_errors: int
    dead_letters: int
    invalid: int
    run_status: str
    worker_error_lines: int
    peak_rss_mb: float  # highest sampled RSS of one worker instance (tree)
    peak_hwm_mb: float  # highest VmHWM of one worker instance (tree)

    @property
    def rate(self) -> float:
        return self.customers / self.seconds

    @property
    def exactly_once(self) -> bool:
        return self.per_customer == {1: self.customers}


def seed(loke: FakeLoke, org: str, n: int, tag: str) -> None:
    """`n` customers in LOKE's shape, created one second apart (stable `sort=created` pages)."""
    loke.set_customers(
        org,
        (
            make_customer(
                f"{tag}{i:07d}",
                T0 + dt.timedelta(seconds=i),
                createdAt=T0 - dt.timedelta(days=400, seconds=-i),
            )
            for i in range(n)
        ),
    )


# -- baseline: GET the pages, nothing else ------------------------------------------------------
def get_all_pages(loke: FakeLoke, org: str, expected: int) -> GetRun:
    """Token first (not timed), then every page, following X-Next-Page like the service."""
    with requests.Session() as http:
        answer = http.post(
            f"{loke.url}/token",
            data={
                "grant_type": "client_credentials",
                "client_id": LOKE_CLIENT_ID,
                "client_secret": LOKE_CLIENT_SECRET,
            },
            timeout=10,
        )
        answer.raise_for_status()
        headers = {
            "Authorization": f"Bearer {answer.json()['access_token']}",
            "Accept": "application/json",
        }
        url: str | None = f"{loke.url}/organizations/{org}/customers?sort=created"
        pages = size = 0
        began = time.perf_counter()
        while url is not None:
            answer = http.get(url, headers=headers, timeout=60)
            answer.raise_for_status()
            size += len(answer.content)
            pages += 1
            url = answer.headers.get("X-Next-Page")
        seconds = time.perf_counter() - began
    return GetRun(expected, pages, size / 1e6, seconds)


# -- the CRM sink ------------------------------------------------------------------------------
def start_sink(bench: BenchStack, latency: float, name: str = "crm-sink") -> str:
    port = free_port()
    argv = [sys.executable, "-m", "devtools.crm", "--port", str(port), "--secret", CRM_SECRET,
            "--delay", str(latency)]  # fmt: skip
    service = bench.stack._start(name, argv)
    url = f"http://127.0.0.1:{port}"
    _wait_until(lambda: _answers(f"{url}/healthz"), service, 30)
    return url


def sink_stats(url: str, org: str, full: bool = False) -> dict[str, Any]:
    params = {"org": org, "full": "1"} if full else {"org": org}
    got = requests.get(f"{url}/stats", params=params, timeout=30)
    got.raise_for_status()
    result: dict[str, Any] = got.json()
    return result


# -- one backfill ------------------------------------------------------------------------------
def run_backfill(
    bench: BenchStack,
    sink_url: str,
    workers: WorkerSettings,
    label: str,
    org: str,
    n: int,
    batch_size: int,
    rps: float,
    concurrency: int = 4,
) -> BackfillRun:
    services = start_workers(bench.stack, workers, f"{label}")
    pids = [s.process.pid for s in services]
    try:
        with RssSampler(pids) as sampler:
            began = time.time()
            connect_org(bench, org, url=sink_url, batchSize=batch_size, maxRequestsPerSecond=rps,
                        maxConcurrentRequests=concurrency)  # fmt: skip
            connected = time.time()
            # Slowest expected: the rate limit, or ~200 customers/s; then a margin.
            deadline = time.monotonic() + 120 + n / min(rps * batch_size * 0.5, 200)
            while True:
                stats = sink_stats(sink_url, org)
                if stats["customers"] >= n or stats["errors"]:
                    break
                if time.monotonic() > deadline:
                    print(f"WARNING: {label}: only {stats['customers']:,} of {n:,} customers")
                    break
                time.sleep(0.25)
            time.sleep(1.0)  # anything still on its way (a duplicate would show up now)
        hwm = max(tree_hwm_kb(pid) for pid in pids)
    finally:
        stop_services(bench.stack, services)
    stats = sink_stats(sink_url, org, full=True)
    answers: list[tuple[float, int]] = [(float(a), int(b)) for a, b in stats["answers"]]
    per_customer = {int(k): int(v) for k, v in stats["per_customer"].items()}
    last = _completing_answer(answers, per_customer, n)
    first = answers[0][0] if answers else math.nan
    steady = (
        sum(ops for _, ops in answers[1:]) / (answers[-1][0] - first)
        if len(answers) > 1
        else math.nan
    )
    run = _run_row(bench.database_url, org)
    return BackfillRun(
        label=label,
        customers=n,
        batch_size=batch_size,
        rps=rps,
        seconds=last - began,
        connect_seconds=connected - began,
        first_batch_seconds=first - began,
        pages_done_seconds=run["finished_at"] - began,
        steady_rate=steady,
        pages=run["pages"],
        batches=len(answers),
        per_customer=per_customer,
        other_operations=sum(v for k, v in stats["operations"].items() if k != "contact.upsert"),
        duplicates=int(stats["duplicates"]),
        crm_errors=len(stats["errors"]),
        dead_letters=run["dead_letters"],
        invalid=run["invalid"],
        run_status=run["status"],
        worker_error_lines=sum(_error_lines(s.log_path) for s in services),
        peak_rss_mb=max(sampler.peak_kb.values()) / MB,
        peak_hwm_mb=hwm / MB,
    )


def _completing_answer(
    answers: Sequence[tuple[float, int]], per_customer: dict[int, int], n: int
) -> float:
    """Time of the answer that brought the CRM to all `n` customers (every customer arrives
    in exactly one batch when nothing is repeated; otherwise the last answer, an upper bound)."""
    if sum(per_customer.values()) < n or not answers:
        return math.nan
    return answers[-1][0]


def _run_row(database_url: str, org: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT status, pages, customers, invalid, finished_at FROM backfill_runs"
            " WHERE org_id = %s ORDER BY id DESC LIMIT 1",
            (org,),
        ).fetchone()
        dead = connection.execute(
            "SELECT count(*) FROM dead_letters WHERE org_id = %s", (org,)
        ).fetchone()
    if row is None:
        raise RuntimeError(f"no backfill run for {org}")
    finished: dt.datetime | None = row[4]
    return {
        "status": str(row[0]),
        "pages": int(row[1]),
        "customers": int(row[2]),
        "invalid": int(row[3]),
        "finished_at": finished.timestamp() if finished else math.nan,
        "dead_letters": int(dead[0]) if dead else 0,
    }


def _error_lines(log_path: Path) -> int:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return sum(1 for line in text.splitlines() if "ERROR/" in line or "Traceback" in line)


# -- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.backfill", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller orgs (< 2 min)")
    parser.add_argument("--big", type=int, help="customers of the big org (200,000; 50,000 quick)")
    parser.add_argument("--small", type=int, help="customers of the small org (20,000; 10,000)")
    parser.add_argument(
        "--limited", type=int, help="customers of the rate-limited run (20,000; 10,000 quick)"
    )
    parser.add_argument("--page-size", type=int, default=1000, help="FakeLoke page size")
    parser.add_argument("--workers", type=int, default=2, help="worker instances")
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=8, help="worker threads each")
    parser.add_argument("--limit-rps", type=float, default=19.0, help="rate-limited run: req/s")
    parser.add_argument("--limit-batch", type=int, default=100, help="rate-limited run: batch")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=8,
        help="maxConcurrentRequests of the rate-limited and in-flight runs",
    )
    parser.add_argument(
        "--crm-latency",
        type=float,
        default=0.0,
        help="seconds the CRM takes to answer a batch (adds the in-flight run)",
    )
    parser.add_argument("--loke-latency", type=float, default=0.0,
                        help="seconds LOKE takes to answer a page")  # fmt: skip
    parser.add_argument("--payments", type=int,
                        help="payments of the big history (200k; quick 50k; 0: none)")  # fmt: skip
    parser.add_argument("--destination", choices=("http", "hubspot"), default="http",
                        help="hubspot: a backfill into the fake HubSpot instead")  # fmt: skip
    parser.add_argument("--requests-per-ten-seconds", type=int, default=190,
                        help="hubspot: the token's allowance (fake and destination)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.destination == "hubspot":
        return backfill_hubspot.main(args)
    big = args.big or (50_000 if args.quick else 200_000)
    small = args.small or (10_000 if args.quick else 20_000)
    limited = args.limited or (10_000 if args.quick else 20_000)
    workers = WorkerSettings(
        args.workers,
        args.pool,
        args.concurrency,
        (QueueName.BACKFILL, QueueName.DELIVERY, QueueName.EVENTS),
    )
    batch_size, rps = 1000, 1000.0

    with bench_stack("backfill") as bench:
        bench.loke.page_size = args.page_size
        print(f"mode: {'quick' if args.quick else 'default'}; big org {big:,} customers,"
              f" small org {small:,}, rate-limited org {limited:,}; FakeLoke pages of"
              f" {args.page_size:,}; CRM latency {args.crm_latency:g} s, LOKE latency"
              f" {args.loke_latency:g} s")  # fmt: skip
        print(f"workers: {workers.describe()}; fresh instances for every backfill")
        print(
            f"destination (throughput and memory runs): batchSize {batch_size},"
            f" maxRequestsPerSecond {rps:g}; rate-limited run: batchSize {args.limit_batch},"
            f" maxRequestsPerSecond {args.limit_rps:g}, maxConcurrentRequests {args.in_flight}"
        )
        print(f"CRM: devtools.crm (own process, counting mode); logs in {bench.log_dir}")
        start_gunicorn(bench.stack, "web", "app.wsgi:app", bench.port, 2)
        sink_url = start_sink(bench, args.crm_latency)

        began = time.perf_counter()
        seed(bench.loke, "org-big", big, "G")
        print(f"seeded {big:,} customers in {time.perf_counter() - began:.1f}s")
        gets = [get_all_pages(bench.loke, "org-big", big)]
        print(f"GET baseline #1: {gets[-1].rate:,.0f} customers/s")
        bench.loke.latency = args.loke_latency  # (the baseline GETs pages at the fake's speed)
        big_run = run_backfill(bench, sink_url, workers, "big", "org-big", big, batch_size, rps)
        print(f"backfill {big:,}: {big_run.rate:,.0f} customers/s")
        bench.loke.latency = 0.0
        gets.append(get_all_pages(bench.loke, "org-big", big))
        print(f"GET baseline #2: {gets[-1].rate:,.0f} customers/s")
        bench.loke.latency = args.loke_latency
        bench.loke.set_customers("org-big", [])  # frees the bench process's memory

        seed(bench.loke, "org-small", small, "S")
        small_run = run_backfill(
            bench, sink_url, workers, "small", "org-small", small, batch_size, rps
        )
        print(f"backfill {small:,}: {small_run.rate:,.0f} customers/s")
        bench.loke.set_customers("org-small", [])

        seed(bench.loke, "org-limited", limited, "L")
        limited_run = run_backfill(
            bench, sink_url, workers, "limited", "org-limited", limited, args.limit_batch,
            args.limit_rps, args.in_flight,
        )  # fmt: skip
        print(f"rate-limited backfill {limited:,}: {limited_run.steady_rate:,.0f} customers/s")
        bench.loke.set_customers("org-limited", [])
        runs = [big_run, small_run, limited_run]

        if args.crm_latency > 0:
            seed(bench.loke, "org-in-flight", limited, "F")
            in_flight_run = run_backfill(
                bench, sink_url, workers, "in flight", "org-in-flight", limited,
                args.limit_batch, rps, args.in_flight,
            )  # fmt: skip
            print(f"in-flight backfill {limited:,}: {in_flight_run.steady_rate:,.0f} customers/s")
            bench.loke.set_customers("org-in-flight", [])
            # The same run against a CRM that answers at once: what this machine's CPU allows.
            seed(bench.loke, "org-floor", limited, "C")
            floor_run = run_backfill(
                bench, start_sink(bench, 0.0, "crm-sink-instant"), workers, "CPU floor",
                "org-floor", limited, args.limit_batch, rps, args.in_flight,
            )  # fmt: skip
            print(f"CPU floor {limited:,}: {floor_run.steady_rate:,.0f} customers/s")
            runs += [in_flight_run, floor_run]

        big_history = args.payments
        if big_history is None:
            big_history = 50_000 if args.quick else 200_000
        payment_runs: list[payment_history.PaymentRun] = []
        if big_history:
            bench.loke.latency = 0.0
            payment_history.seed(bench.loke, "org-paid", big_history)
            get_seconds = [payment_history.get_all_pages(bench.loke, "org-paid")]
            bench.loke.latency = args.loke_latency
            payment_runs.append(payment_history.run(bench, sink_url, workers, "big", "org-paid",
                                                    big_history))  # fmt: skip
            bench.loke.latency = 0.0
            get_seconds.append(payment_history.get_all_pages(bench.loke, "org-paid"))
            bench.loke.latency = args.loke_latency
            bench.loke.set_payments("org-paid", [])
            small_history = max(big_history // 10, 1000)
            payment_history.seed(bench.loke, "org-paid-small", small_history)
            payment_runs.append(payment_history.run(bench, sink_url, workers, "small",
                                                    "org-paid-small", small_history))  # fmt: skip

    report(runs, gets, args)
    if payment_runs:
        payment_history.report(payment_runs, big_history / statistics.mean(get_seconds))
    return 0


def report(runs: list[BackfillRun], gets: list[GetRun], args: argparse.Namespace) -> None:
    """The tables, then each goal's line."""
    big_run, small_run, limited_run = runs[:3]
    print()
    print_table(
        ["GET run", "customers", "pages", "MB", "seconds", "ms/page", "customers/s"],
        [
            [f"#{i}", g.customers, g.pages, g.megabytes, g.seconds,
             1000 * g.seconds / g.pages, g.rate]
            for i, g in enumerate(gets, 1)
        ],
    )  # fmt: skip
    print()
    print_table(
        ["backfill", "customers", "batch", "req/s", "PUT took s", "1st batch at s",
         "pages done at s", "delivered at s", "customers/s", "steady /s", "pages", "batches"],
        [
            [r.label, r.customers, r.batch_size, r.rps, r.connect_seconds, r.first_batch_seconds,
             r.pages_done_seconds, r.seconds, r.rate, r.steady_rate, r.pages, r.batches]
            for r in runs
        ],
    )  # fmt: skip
    print()
    print_table(
        ["backfill", "upserts per customer", "other ops", "duplicate batches", "CRM errors",
         "dead letters", "invalid", "run status", "worker ERROR lines"],
        [
            [r.label, _per_customer(r.per_customer), r.other_operations, r.duplicates,
             r.crm_errors, r.dead_letters, r.invalid, r.run_status, r.worker_error_lines]
            for r in runs
        ],
    )  # fmt: skip
    print()
    print_table(
        ["backfill", "customers", "peak RSS MB (sampled)", "peak VmHWM MB"],
        [[r.label, r.customers, r.peak_rss_mb, r.peak_hwm_mb] for r in runs],
    )
    get_rate = statistics.mean(g.rate for g in gets)
    ceiling = args.limit_rps * args.limit_batch
    ok = all(r.exactly_once and not (r.duplicates or r.crm_errors or r.dead_letters) for r in runs)
    print("\n(times are seconds after PUT /api/orgs/<org>; RSS is per worker instance, the max"
          " of the instances)")  # fmt: skip
    print(f"GET pages, no processing   {get_rate:,.0f} customers/s (mean of {len(gets)})")
    for r in runs:
        print(f"backfill {r.label:<10} {r.rate:,.0f} customers/s ({r.customers:,} customers)")
    print(f"ratio backfill/GET = {big_run.rate / get_rate:.2f} (goal >= 0.50)")
    print(f"ratio small organization after the big one/GET = {small_run.rate / get_rate:.2f}"
          " (goal >= 0.50)")  # fmt: skip
    print(
        f"worker peak RSS: {big_run.customers:,} customers {big_run.peak_rss_mb:,.1f} MB,"
        f" {small_run.customers:,} customers {small_run.peak_rss_mb:,.1f} MB;"
        f" difference = {big_run.peak_rss_mb - small_run.peak_rss_mb:+.1f} MB (goal < 50)"
        f" [VmHWM: {big_run.peak_hwm_mb - small_run.peak_hwm_mb:+.1f} MB]"
    )
    print(
        f"rate-limited: {limited_run.steady_rate:,.1f} customers/s first to last batch vs"
        f" limit x batchSize = {ceiling:,.0f}/s; ratio = {limited_run.steady_rate / ceiling:.2f}"
        " (goal >= 0.90)"
    )
    if len(runs) > 3:
        flight, floor = runs[3], runs[4]
        ideal = args.in_flight * args.limit_batch / args.crm_latency
        bound, named = min(
            (ideal, "maxConcurrentRequests x batchSize / CRM latency"),
            (floor.steady_rate, "the CPU floor (same run, CRM answering at once)"),
        )
        print(
            f"in flight: {flight.steady_rate:,.1f} customers/s first to last batch;"
            f" maxConcurrentRequests x batchSize / CRM latency = {ideal:,.0f}/s, CPU floor ="
            f" {floor.steady_rate:,.0f}/s; vs the lower, {named}: ratio ="
            f" {flight.steady_rate / bound:.2f} (goal >= 0.80)"
        )
    print(f"every customer exactly once, no errors: {'yes' if ok else 'NO'}")


def _per_customer(counts: dict[int, int]) -> str:
    return ", ".join(f"{k}x: {v:,}" for k, v in sorted(counts.items())) or "none"


if __name__ == "__main__":
    sys.exit(main())
