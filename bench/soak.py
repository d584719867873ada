"""Sustained load: webhooks at a fixed rate for minutes, with backfills and list resyncs running.

    python -m bench.soak [--minutes 10] [--rate 695] [--quick]

The rate defaults to half the ingest bench's maximum (README, Performance: 1,390 req/s), sent
open loop (a slow answer does not slow arrivals down) to gunicorn with 4 sync workers as in the
Procfile, applied and delivered by 2 worker instances on every queue, with beat. Each webhook
updates one of a pool of customers with `updatedAt` = the moment it is sent, so the CRM computes
the end-to-end lag of every contact it receives. Meanwhile a second organization is backfilled
again every `--backfill-every` seconds (its customers changed at LOKE each time) and its list is
resynced by beat with 1% churn. Every 5 s the bench samples worker and web RSS and the backlog
(pending inbox events, pending outbox rows). It prints p99 ack latency, lag percentiles, RSS
first/last minute and the backlog's maximum, and writes artifacts/bench/soak.png (lag and RSS
over time; `--plot` elsewhere, e.g. docs/soak.png).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import psycopg
import requests

from app.core.queues import ALL_QUEUES
from bench.common import (
    LOG_ROOT,
    BenchStack,
    WorkerSettings,
    bench_stack,
    connect_org,
    percentile,
    send_raw,
    start_gunicorn,
    start_workers,
    tree_rss_kb,
)
from tests.conftest import ADMIN_TOKEN
from tests.support import FakeServer, Request, Response, json_response, parse_ts
from tests.support.fake_loke import customer_event, make_customer, sign

INGEST_MAX = 1390.0  # README, Performance: accepted webhooks/s, 4 sync web workers
POOL = 20_000  # customers the webhooks update, round robin
BACKFILL_CUSTOMERS = 20_000
LIST_MEMBERS = 5_000
SAMPLE_SECONDS = 5.0
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class LagCrm(FakeServer):
    """A CRM that keeps only what the soak needs: per contact, now minus its `updatedAt`."""

    def __init__(self, secret: str, org: str) -> None:
        super().__init__()
        self.secret, self.org = secret.encode(), org
        self.lock = threading.Lock()
        self.lags: list[tuple[float, float]] = []  # (epoch received, lag seconds)
        self.operations = 0

    def handle(self, request: Request) -> Response:
        expected = "sha256=" + hmac.new(self.secret, request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(
            (request.header("x-signature") or "").encode(), expected.encode()
        ):
            return json_response(401, {"error": {"code": "bad_signature", "message": "no"}})
        batch = json.loads(request.body)
        now = time.time()
        lags = [
            (now, now - parse_ts(op["contact"]["updatedAt"]).timestamp())
            for op in batch["operations"]
            if op["type"] == "contact.upsert" and batch["organizationId"] == self.org
        ]
        with self.lock:
            self.lags.extend(lags)
            self.operations += len(batch["operations"])
        return json_response(200, {"status": "applied"})


@dataclass
class Samples:
    """Every 5 s: (seconds since start, value) series for the plot and the summary."""

    rss_mb: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    inbox_pending: list[tuple[float, int]] = field(default_factory=list)
    outbox_pending: list[tuple[float, int]] = field(default_factory=list)
    load1: list[float] = field(default_factory=list)  # the machine's, shared with others


class Webhooks:
    """Open-loop sender: webhook i leaves at start + i / rate whatever happened before."""

    def __init__(self, port: int, org: str, secret: str, rate: float, seconds: float) -> None:
        self.port, self.org, self.secret = port, org, secret
        self.rate, self.total = rate, int(rate * seconds)
        template = customer_event("customer.updated", org, make_customer("CTEMPLATE", dt.datetime(
            2026, 1, 1, tzinfo=dt.UTC)))  # fmt: skip
        self.template = json.dumps(template, separators=(",", ":"))
        # (seconds behind schedule when sent, ack latency from the send, status, epoch done)
        self.results: list[tuple[float, float, int, float]] = []
        self._next = count()
        self._lock = threading.Lock()

    def run(self, start_at: float, threads: int = 64) -> None:
        workers = [threading.Thread(target=self._loop, args=(start_at,)) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _loop(self, start_at: float) -> None:
        local = []
        while (i := next(self._next)) < self.total:
            scheduled = start_at + i / self.rate
            if (pause := scheduled - time.time()) > 0:
                time.sleep(pause)
            began = time.time()
            stamp = dt.datetime.fromtimestamp(began, dt.UTC)
            body = (
                self.template.replace("CTEMPLATE", f"C{i % POOL:06d}")
                .replace("ctemplate", f"c{i % POOL:06d}")
                .replace("2026-01-01T00:00:00.000Z", _iso(stamp))
                .encode()
            )
            head = (f"POST /webhooks/loke/{self.org} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                    f"application/json\r\nX-Event-Signature: {sign(body, self.secret)}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")  # fmt: skip
            status = send_raw(self.port, head.encode() + body)
            done = time.time()
            local.append((began - scheduled, done - began, status, done))
        with self._lock:
            self.results.extend(local)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def refresh_backfill_org(bench: BenchStack, org: str, round_no: int) -> None:
    """New `updatedAt` for every customer and 1% list churn: the next runs have work to do."""
    now = dt.datetime.now(dt.UTC)
    customers = [
        make_customer(f"B{n:06d}", now + dt.timedelta(milliseconds=n))
        for n in range(BACKFILL_CUSTOMERS)
    ]
    bench.loke.set_customers(org, customers)
    shift = round_no * LIST_MEMBERS // 100
    members = [f"B{(n + shift) % BACKFILL_CUSTOMERS:06d}" for n in range(LIST_MEMBERS)]
    bench.loke.set_list(org, "L-soak", "Soak list", members)


def backlog(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as db:
        row = db.execute(
            "SELECT (SELECT count(*) FROM inbox WHERE status = 'pending'),"
            " (SELECT count(*) FROM outbox WHERE pending)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def sample(bench: BenchStack, services: dict[str, int], samples: Samples, t: float) -> None:
    for name, pid in services.items():
        samples.rss_mb.setdefault(name, []).append((t, tree_rss_kb(pid) / 1024))
    inbox, outbox = backlog(bench.database_url)
    samples.inbox_pending.append((t, inbox))
    samples.outbox_pending.append((t, outbox))
    samples.load1.append(os.getloadavg()[0])


def plot(crm: LagCrm, samples: Samples, start_at: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    windows: dict[int, list[float]] = {}
    for received, lag in crm.lags:
        windows.setdefault(int((received - start_at) // 10) * 10, []).append(lag)
    xs = sorted(windows)
    fig, (lag_ax, rss_ax) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for p, style in ((50, "-"), (99, "--")):
        lag_ax.plot(xs, [percentile(windows[x], p) for x in xs], style, label=f"lag p{p}")
    lag_ax.set_ylabel("webhook → CRM lag (s)")
    backlog_ax = lag_ax.twinx()
    backlog_ax.plot(*zip(*samples.outbox_pending, strict=True), ":", color="grey",
                    label="outbox pending")  # fmt: skip
    backlog_ax.set_ylabel("outbox rows pending")
    lag_ax.legend(loc="upper left")
    backlog_ax.legend(loc="upper right")
    for name, series in samples.rss_mb.items():
        rss_ax.plot(*zip(*series, strict=True), label=name)
    rss_ax.set_ylabel("RSS (MB, process tree)")
    rss_ax.set_xlabel("seconds since the first webhook")
    rss_ax.set_ylim(bottom=0)
    rss_ax.legend(loc="lower right")
    fig.suptitle("Soak: webhooks at a fixed rate with backfills and list resyncs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def summarize(sender: Webhooks, crm: LagCrm, samples: Samples, drained_at: float) -> dict[str, Any]:
    acks = [latency for _, latency, status, _ in sender.results if status == 202]
    behind = [late for late, *_ in sender.results]
    finished = max(done for *_, done in sender.results)
    started = min(done - latency for _, latency, _, done in sender.results)
    lags = [lag for _, lag in crm.lags]
    rss = {}
    for name, series in samples.rss_mb.items():
        first = [mb for t, mb in series if t <= 60]
        last = [mb for t, mb in series if t >= series[-1][0] - 60]
        rss[name] = {"first_minute_mb": round(sum(first) / len(first), 1),
                     "last_minute_mb": round(sum(last) / len(last), 1),
                     "max_mb": round(max(mb for _, mb in series), 1)}  # fmt: skip
    return {
        "webhooks": len(sender.results),
        "accepted": len(acks),
        "achieved_rate": round(len(sender.results) / (finished - started), 1),
        "sender_behind_p99_s": round(percentile(behind, 99), 2),
        "ack_p50_ms": round(percentile(acks, 50) * 1000, 1),
        "ack_p99_ms": round(percentile(acks, 99) * 1000, 1),
        "contacts_delivered": len(lags),
        **{f"lag_p{p}_s": round(percentile(lags, p), 2) for p in (50, 90, 99)},
        "lag_max_s": round(max(lags), 2) if lags else None,
        "rss": rss,
        "inbox_pending_max": max(n for _, n in samples.inbox_pending),
        "outbox_pending_max": max(n for _, n in samples.outbox_pending),
        "drain_after_last_webhook_s": round(drained_at - finished, 1),
        "load1_mean": round(sum(samples.load1) / len(samples.load1), 1),
        "load1_max": round(max(samples.load1), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=INGEST_MAX / 2, help="webhooks/s")
    parser.add_argument("--quick", action="store_true", help="one minute")
    parser.add_argument("--backfill-every", type=float, default=120.0, help="seconds")
    parser.add_argument("--plot", type=Path, default=LOG_ROOT / "soak.png")
    args = parser.parse_args(argv)
    seconds = 60.0 if args.quick else args.minutes * 60
    org, bf_org = "org-soak", "org-soak-backfill"

    with bench_stack("soak") as bench, LagCrm("bench-crm-secret", org) as crm:
        bench.stack.env |= {"LIST_DISPATCH_SECONDS": "10"}
        web = start_gunicorn(bench.stack, "receiver", "app.wsgi:app", bench.port, 4)
        workers = start_workers(bench.stack, WorkerSettings(2, "threads", 4, ALL_QUEUES), "soak")
        bench.stack.beat()
        secret = connect_org(bench, org, url=crm.url)
        refresh_backfill_org(bench, bf_org, 0)
        connect_org(bench, bf_org, url=crm.url)  # starts the first backfill
        chosen = {"lists": ["L-soak"], "listSyncIntervalSeconds": 60}
        answer = requests.put(f"{bench.web_url}/api/orgs/{bf_org}", json=chosen, headers=AUTH,
                              timeout=10)  # fmt: skip
        answer.raise_for_status()
        print(f"{args.rate:,.0f} webhooks/s for {seconds / 60:g} min; logs in {bench.log_dir}")

        sender = Webhooks(bench.port, org, secret, args.rate, seconds)
        start_at = time.time() + 1
        sending = threading.Thread(target=sender.run, args=(start_at,))
        sending.start()
        services = {w.name: w.process.pid for w in workers} | {"web": web.process.pid}
        samples, rounds, next_backfill = Samples(), 0, start_at + args.backfill_every
        drained_at, sending_ended = 0.0, 0.0
        while True:
            time.sleep(SAMPLE_SECONDS)
            now = time.time()
            sample(bench, services, samples, now - start_at)
            if sending.is_alive() and now >= next_backfill:
                rounds += 1
                refresh_backfill_org(bench, bf_org, rounds)
                url = f"{bench.web_url}/api/orgs/{bf_org}/backfill"
                print(f"{now - start_at:5.0f} s: backfill {rounds}:",
                      requests.post(url, headers=AUTH, timeout=10).status_code)  # fmt: skip
                next_backfill = now + args.backfill_every
            if not sending.is_alive():
                sending_ended = sending_ended or now
                if samples.inbox_pending[-1][1] == samples.outbox_pending[-1][1] == 0:
                    drained_at = now
                    break
                if now > sending_ended + 300:
                    print("WARNING: backlog not drained 5 minutes after the last webhook")
                    drained_at = now
                    break
        sending.join()
        summary = summarize(sender, crm, samples, drained_at)
        plot(crm, samples, start_at, args.plot)

    summary |= {"rate": args.rate, "minutes": seconds / 60, "backfill_rounds": rounds + 1}
    (LOG_ROOT / "soak.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
