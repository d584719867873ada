"""Events/s from accepted to delivered at a local CRM vs a no-op Celery task's throughput on the
same worker settings, same run.

    .venv/bin/python -m bench.pipeline [--quick]

Baseline: N no-op tasks (one per event) queued, then the workers started; tasks/s = N / (time
the last one finished - time the first worker was ready). Pipeline: N distinct events accepted
by the real receiver while no worker runs (they wait in the inbox, one drain task queued), then
the same workers started; events/s = N / (time of the CRM answer that completed the final state
- time the first worker was ready). Goal (from the issue): pipeline/no-op >= 0.6. Timings are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
from celery import Celery
from kombu import Queue

from app.core.queues import QueueName
from bench.common import (
    BenchStack,
    WorkerSettings,
    bench_stack,
    connect_org,
    median,
    post_all,
    print_table,
    ready_time,
    signed,
    start_gunicorn,
    start_workers,
    stop_services,
)
from bench.noop_task import DONE_KEY, END_KEY, FIRST_KEY, NOOP_TASK
from devtools.crm import FakeCrm
from tests.support.streams import make_stream, mismatches

EVENTS_PER_CUSTOMER = (
    9.3  # make_stream: created + 4 updates + 3 statistics + 1 payment + 30% refunds
)
INCLUDE = ("bench.noop_task",)  # loaded by both runs' workers, so their settings are identical


@dataclass
class NoopRun:
    tasks: int
    seconds: float  # first worker ready -> last task finished
    consume_seconds: float  # first task started -> last task finished

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds


@dataclass
class PipelineRun:
    events: int
    post_seconds: float
    seconds: float  # first worker ready -> CRM answer completing the final state
    drain_seconds: float  # first worker ready -> last event applied to the mirror
    first_delivery_seconds: float  # first worker ready -> first CRM answer
    batches: int
    operations: int
    duplicate_batches: int
    regressions: int
    overlaps: int
    protocol_errors: int
    mismatches: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def noop_producer(redis_url: str) -> Celery[Any]:
    """A client app routing like the service's (tasks land in the `events` queue)."""
    app = Celery("bench-producer")
    app.conf.update(
        broker_url=redis_url,
        task_queues=[Queue(name) for name in QueueName],
        task_default_queue=QueueName.EVENTS,
        task_create_missing_queues=False,
    )
    return app


def run_noop(bench: BenchStack, workers: WorkerSettings, n: int, tag: str) -> NoopRun:
    client = redis.Redis.from_url(bench.redis_url)
    client.delete(DONE_KEY, FIRST_KEY, END_KEY)
    producer = noop_producer(bench.redis_url)
    with producer.producer_or_acquire() as publisher:
        for _ in range(n):
            producer.send_task(NOOP_TASK, args=(n,), producer=publisher)
    queued = int(client.llen(QueueName.EVENTS))
    if queued < n:
        raise RuntimeError(f"only {queued} of {n} no-op tasks reached the events queue")
    services = start_workers(bench.stack, workers, tag, INCLUDE)
    try:
        deadline = time.monotonic() + max(120, n / 20)
        while (end := client.get(END_KEY)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no-op tasks not done: {client.get(DONE_KEY)!r} of {n}")
            time.sleep(0.05)
        started = min(ready_time(s) for s in services)
        first = float(client.get(FIRST_KEY) or 0)
        return NoopRun(n, float(end) - started, float(end) - first)
    finally:
        stop_services(bench.stack, services)
        client.close()


def run_pipeline(
    bench: BenchStack, workers: WorkerSettings, n: int, tag: str, batch_size: int, rps: float
) -> PipelineRun:
    org = f"org-bench-{tag}"
    secret = connect_org(bench, org, batchSize=batch_size, maxRequestsPerSecond=rps)
    stream = make_stream(org, customers=math.ceil(n / EVENTS_PER_CUSTOMER), duplicate_ratio=0)
    items = [signed(event, secret) for event in stream.events]
    began = time.monotonic()
    statuses = post_all(bench.port, f"/webhooks/loke/{org}", items)
    post_seconds = time.monotonic() - began
    accepted = statuses.get(202, 0)
    if accepted != len(items):
        raise RuntimeError(f"receiver answered {dict(statuses)} for {len(items)} distinct events")
    crm = bench.crm
    crm.reset()

    def delivered(c: FakeCrm) -> bool:
        return not mismatches(stream.truth, org, c.contacts, c.payments)

    # crm.answered is in time.monotonic(); worker logs are in epoch time.
    epoch_offset = time.time() - time.monotonic()
    services = start_workers(bench.stack, workers, tag, INCLUDE)
    try:
        done = crm.wait_for(delivered, timeout=max(180, n / 10), interval=0.05)
        started = min(ready_time(s) for s in services)
    finally:
        stop_services(bench.stack, services)
    wrong = mismatches(stream.truth, org, crm.contacts, crm.payments)
    if not done:
        print(
            f"WARNING: CRM state not final after the timeout; {len(wrong)} differences,"
            f" first: {wrong[:3]}"
        )
    ok_answers = [at for at, status, _ in crm.answered if 200 <= status < 300]
    last = max(ok_answers) + epoch_offset if ok_answers else math.nan
    first = min(ok_answers) + epoch_offset if ok_answers else math.nan
    with psycopg.connect(bench.database_url) as connection:
        row = connection.execute(
            "SELECT max(processed_at), count(*) FILTER (WHERE status <> 'applied')"
            " FROM inbox WHERE org_id = %s",
            (org,),
        ).fetchone()
    assert row is not None
    applied_at: dt.datetime | None = row[0]
    if row[1]:
        print(f"WARNING: {row[1]} inbox rows of {org} not applied")
    drained = applied_at.timestamp() if applied_at else math.nan
    return PipelineRun(
        events=accepted,
        post_seconds=post_seconds,
        seconds=last - started,
        drain_seconds=drained - started,
        first_delivery_seconds=first - started,
        batches=len(crm.batches),
        operations=crm.operation_count,
        duplicate_batches=len(crm.duplicate_batch_ids),
        regressions=len(crm.regressions),
        overlaps=len(crm.overlaps),
        protocol_errors=len(crm.protocol_errors) + crm.bad_signatures,
        mismatches=len(wrong),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (< 60 s)")
    parser.add_argument("--events", type=int, help="events per run (default 10,000; 3,000 quick)")
    parser.add_argument("--rounds", type=int, help="no-op/pipeline alternations (2; 1 quick)")
    parser.add_argument("--workers", type=int, default=2, help="worker instances")
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--crm-latency", type=float, default=0.0,
                        help="seconds the CRM takes to answer a batch")  # fmt: skip
    args = parser.parse_args(argv)
    n = args.events or (3_000 if args.quick else 10_000)
    rounds = args.rounds or (1 if args.quick else 2)
    workers = WorkerSettings(args.workers, args.pool, args.concurrency)
    batch_size, rps = 100, 1000.0

    with bench_stack("pipeline") as bench:
        bench.crm.delay(args.crm_latency)
        print(
            f"workers: {workers.describe()}; destination batchSize {batch_size},"
            f" maxRequestsPerSecond {rps:g}, maxConcurrentRequests 4 (the default); CRM latency"
            f" {args.crm_latency:g} s; ~{n:,} events per run; logs in {bench.log_dir}"
        )
        start_gunicorn(bench.stack, "receiver", "app.wsgi:app", bench.port, args.web_workers)
        noops: list[NoopRun] = []
        pipes: list[PipelineRun] = []
        for round_no in range(1, rounds + 1):
            noops.append(run_noop(bench, workers, n, f"noop{round_no}"))
            pipes.append(run_pipeline(bench, workers, n, f"pipe{round_no}", batch_size, rps))
            print(
                f"round {round_no}: no-op {noops[-1].rate:,.0f} tasks/s,"
                f" pipeline {pipes[-1].rate:,.0f} events/s"
            )

    print()
    print_table(
        ["no-op run", "tasks", "seconds", "tasks/s", "consume-only tasks/s"],
        [
            [f"#{i}", r.tasks, r.seconds, r.rate, (r.tasks - 1) / r.consume_seconds]
            for i, r in enumerate(noops, 1)
        ],
    )
    print()
    print_table(
        [
            "pipeline run",
            "events",
            "posted in s",
            "drained at s",
            "1st batch at s",
            "delivered at s",
            "events/s",
            "batches",
            "operations",
        ],
        [
            [
                f"#{i}",
                r.events,
                r.post_seconds,
                r.drain_seconds,
                r.first_delivery_seconds,
                r.seconds,
                r.rate,
                r.batches,
                r.operations,
            ]
            for i, r in enumerate(pipes, 1)
        ],
    )
    print()
    print_table(
        [
            "pipeline run",
            "regressions",
            "overlaps",
            "protocol errors",
            "duplicate batches",
            "final-state mismatches",
        ],
        [
            [
                f"#{i}",
                r.regressions,
                r.overlaps,
                r.protocol_errors,
                r.duplicate_batches,
                r.mismatches,
            ]
            for i, r in enumerate(pipes, 1)
        ],
    )
    noop_rate = median([r.rate for r in noops])
    pipe_rate = median([r.rate for r in pipes])
    print("\n(times are seconds after the first worker was ready)")
    print(f"no-op Celery tasks  {noop_rate:,.0f} tasks/s (median)")
    print(f"pipeline            {pipe_rate:,.0f} events/s accepted -> delivered (median)")
    print(f"ratio pipeline/noop = {pipe_rate / noop_rate:.2f} (goal >= 0.60)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
