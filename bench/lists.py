"""List resync of a large list with 1% churn vs the raw time to GET its pages, same run.

    .venv/bin/python -m bench.lists [--quick]

Per list size (a small one, then the large one; each on its own organization and its own freshly
started workers): FakeLoke holds N customers and one list of those N members (page size 1000);
the organization is connected through the admin API with `lists: [<list>]` and a fast counting
CRM as destination; a first full sync (POST /lists/sync) runs until the CRM holds N members. Then
1% of the members are removed at LOKE and as many customers unknown to the mirror are created at
LOKE and added to the list, and the second resync is measured: POST /lists/sync -> the run is
finished and no outbox row of the organization is pending (the end time is the later of the
run's finish and the last CRM answer). Baseline: GET every member page of the same list from the
same FakeLoke with `requests` (token, follow X-Next-Page, no processing), before and after the
resync. Goal (from the issue): resync / raw GET <= 2.0, exactly the churn delivered, worker peak
RSS <= 300 MB and not growing with list size. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import requests

from app.core.queues import QueueName
from bench.common import (
    CRM_SECRET,
    BenchStack,
    CpuMeter,
    RssSampler,
    WorkerSettings,
    bench_stack,
    median,
    pids_named,
    print_table,
    process_tree,
    start_gunicorn,
    start_workers,
    stop_services,
    tree_hwm_kb,
)
from devtools.crm import FakeCrm, OrgCounts
from tests.conftest import ADMIN_TOKEN, LOKE_CLIENT_ID, LOKE_CLIENT_SECRET
from tests.support import Request, Response, json_response
from tests.support.fake_loke import FakeLoke, make_customer

LIST_ID = "LBENCH"
PAGE_SIZE = 1000
CHURN = 0.01
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
_TINY = ("id", "email", "firstName", "lastName", "phoneNumber")  # FakeLoke's member fields


# -- FakeLoke: member pages without building the whole list per page ---------------------------
def serve_member_pages_by_slice(loke: FakeLoke) -> None:
    """FakeLoke builds a dict for *every* member of the list on each member-page request and
    then slices one page (0.4 s per page at 200k members, under its global lock: a 200k read
    would take ~80 s, all of it the fake's). This wraps its router so member pages are sliced
    first; the answer (items, order, X-Next-Page) is the same, which `check_same_pages` checks."""
    original: Callable[[Request, list[str]], Response] = loke._api

    def api(request: Request, parts: list[str]) -> Response:
        if (
            request.method == "GET"
            and len(parts) == 5
            and parts[0] == "organizations"
            and parts[2] == "customer-lists"
            and parts[4] == "members"
            and parts[1] in loke._orgs
        ):
            org, list_id = parts[1], parts[3]
            stored = loke._lists.get(org, {}).get(list_id)
            after = request.param("after")
            try:
                offset = int(base64.urlsafe_b64decode(after.encode()).decode()) if after else 0
            except ValueError:
                return original(request, parts)
            if stored is not None:
                customers = loke._customers.get(org, {})
                members: dict[str, str] = stored["members"]
                end = offset + loke.page_size
                items = [
                    {**{k: customers.get(m, {}).get(k) for k in _TINY}, "id": m, "addedAt": at}
                    for m, at in islice(members.items(), offset, end)
                ]
                headers: dict[str, str] = {}
                if end < len(members):
                    query = {k: v for k, v in request.query.items() if k != "after"}
                    query["after"] = [base64.urlsafe_b64encode(str(end).encode()).decode()]
                    target = f"{request.path}?{urlencode(query, doseq=True)}"
                    headers["X-Next-Page"] = (
                        target if loke.relative_next_page else loke.url + target
                    )
                return json_response(200, items, headers)
        return original(request, parts)

    setattr(loke, "_api", api)  # noqa: B010 (an instance attribute shadows the method)


def check_same_pages(loke: FakeLoke, org: str, list_id: str, offsets: list[int]) -> None:
    """The sliced member pages equal FakeLoke's own for these offsets."""
    sliced: Callable[[Request, list[str]], Response] = loke._api
    original = FakeLoke._api.__get__(loke)
    path = f"/organizations/{org}/customer-lists/{list_id}/members"
    parts = ["organizations", org, "customer-lists", list_id, "members"]
    for offset in offsets:
        cursor = base64.urlsafe_b64encode(str(offset).encode()).decode()
        query = {"after": [cursor]} if offset else {}
        target = f"{path}?{urlencode(query, doseq=True)}" if query else path
        request = Request("GET", target, path, query, {}, b"")
        with loke._lock:
            mine, theirs = sliced(request, parts), original(request, parts)
        if (mine.status, mine.body, mine.headers) != (theirs.status, theirs.body, theirs.headers):
            raise RuntimeError(f"sliced member page at offset {offset} differs from FakeLoke's")


# -- baseline ---------------------------------------------------------------------------------
def raw_get_pages(loke_url: str, org: str, list_id: str) -> tuple[float, int, int]:
    """Seconds to GET every member page (token included), pages, bytes."""
    began = time.monotonic()
    token = requests.post(
        f"{loke_url}/token",
        data={
            "grant_type": "client_credentials",
            "client_id": LOKE_CLIENT_ID,
            "client_secret": LOKE_CLIENT_SECRET,
        },
        timeout=10,
    ).json()["access_token"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    url: str | None = f"{loke_url}/organizations/{org}/customer-lists/{list_id}/members"
    pages = size = 0
    while url:
        answer = session.get(url, timeout=30)
        answer.raise_for_status()
        pages += 1
        size += len(answer.content)
        url = answer.headers.get("X-Next-Page")
    session.close()
    return time.monotonic() - began, pages, size


# -- the service ------------------------------------------------------------------------------
@dataclass
class SyncResult:
    run_id: int
    status: str
    seconds: float  # POST -> later of run finished and last CRM answer
    run_seconds: float  # POST -> the run's finished_at (stamped once the diff is computed)
    pages: int
    adds: int  # as the run counted them
    removes: int
    phase: OrgCounts


def post_sync(bench: BenchStack, org: str) -> int:
    answer = requests.post(
        f"{bench.web_url}/api/orgs/{org}/lists/sync",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    if answer.status_code != 202:
        raise RuntimeError(f"lists/sync: {answer.status_code} {answer.text}")
    runs = answer.json()["runs"]
    if len(runs) != 1 or not runs[0]["started"]:
        raise RuntimeError(f"lists/sync started {runs}")
    return int(runs[0]["runId"])


def run_state(
    connection: psycopg.Connection[Any], org: str, run_id: int
) -> tuple[str, Any, int, int, int, bool]:
    """(status, finished_at, pages, adds, removes, whether any outbox row of the org is
    pending). Pending is asked only of a finished run, and as EXISTS: a count(*) scanned the
    partial index's dead entries (the first sync's delivered rows) on every poll, ~40 ms of
    PostgreSQL CPU each, on the cores the resync runs on."""
    row = connection.execute(
        "SELECT status, finished_at, pages, adds, removes FROM list_sync_runs WHERE id = %s",
        (run_id,),
    ).fetchone()
    assert row is not None
    pending = True
    if row[0] == "finished":
        found = connection.execute(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE org_id = %s AND pending)", (org,)
        ).fetchone()
        assert found is not None
        pending = bool(found[0])
    return str(row[0]), row[1], int(row[2]), int(row[3]), int(row[4]), pending


def sync_and_wait(
    bench: BenchStack,
    sink: FakeCrm,
    org: str,
    timeout: float,
    label: str,
    at_end: Callable[[], None] = lambda: None,
) -> SyncResult:
    """POST /lists/sync, then wait until the run finished and nothing is pending for the org
    (`at_end` is called then, before a second of waiting for stray deliveries). Polled on one
    connection kept open (a connection a poll would fork a server backend 20 times a second,
    on the cores the resync runs on)."""
    sink.reset_counts(org)
    with psycopg.connect(bench.database_url, autocommit=True) as connection:
        began = time.time()
        run_id = post_sync(bench, org)
        deadline = time.monotonic() + timeout
        last_report = time.monotonic()
        while True:
            status, finished_at, pages, adds, removes, pending = run_state(connection, org, run_id)
            if status not in ("running", "finished"):
                raise RuntimeError(f"{label}: run {run_id} ended {status}")
            if status == "finished" and not pending:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{label}: not done after {timeout:.0f} s ({status}, {pending=})"
                )
            if time.monotonic() - last_report > 30:
                print(f"  {label}: {status}, {pages} pages, {pending=}", flush=True)
                last_report = time.monotonic()
            time.sleep(0.05)
    at_end()
    time.sleep(1.0)  # anything delivered after "nothing pending" would be counted (and wrong)
    phase = sink.counts(org)
    finished = finished_at.timestamp()
    end = max(finished, phase.last_answer)
    return SyncResult(run_id, status, end - began, finished - began, pages, adds, removes, phase)


def connect_with_list(
    bench: BenchStack, sink: FakeCrm, org: str, batch_size: int, rps: float
) -> None:
    """Connect through the admin API with the list chosen (connect_org's PUT, plus `lists`)."""
    bench.loke.add_org(org)
    destination = {
        "type": "http",
        "url": sink.url,
        "secret": CRM_SECRET,
        "batchSize": batch_size,
        "maxRequestsPerSecond": rps,
    }
    answer = requests.put(
        f"{bench.web_url}/api/orgs/{org}",
        json={"destination": destination, "lists": [LIST_ID]},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    if answer.status_code != 201:
        raise RuntimeError(f"connecting {org}: {answer.status_code} {answer.text}")


# -- one list size ----------------------------------------------------------------------------
@dataclass
class SizeResult:
    members: int
    churn: int
    raw_seconds: list[float]
    raw_pages: int
    raw_mb: float
    first: SyncResult
    second: SyncResult
    expected_ok: bool
    identity_ok: bool
    final_ok: bool
    first_rss_mb: float
    second_rss_mb: float
    hwm_mb: float
    resync_cpu: float  # CPU seconds of every measured process while the resync ran

    @property
    def raw(self) -> float:
        return median(self.raw_seconds)

    @property
    def ratio(self) -> float:
        return self.second.seconds / self.raw


# What the first sync rewrote: hundreds of thousands of dead rows and stale statistics.
SETTLED_TABLES = ("outbox", "customers", "list_members", "list_run_pages")


def settle_database(bench: BenchStack) -> float:
    """VACUUM ANALYZE what the first sync rewrote, as autovacuum (a one-minute naptime) does
    before the earliest scheduled resync (`listSyncIntervalSeconds` >= 60); seconds taken.
    Measured at once instead, the resync pays for the first sync: ~0.4 s analyzing the outbox
    and claims that step over 400k dead index entries (70 ms each, at 200k)."""
    began = time.monotonic()
    with psycopg.connect(bench.database_url, autocommit=True) as connection:
        connection.execute(f"VACUUM (ANALYZE) {', '.join(SETTLED_TABLES)}")
    return time.monotonic() - began


def run_size(
    bench: BenchStack,
    sink: FakeCrm,
    workers: WorkerSettings,
    n: int,
    batch_size: int,
    rps: float,
    settle: bool = True,
    loke_latency: float = 0.0,
) -> SizeResult:
    org = f"org-list-{n}"
    ids = [f"{org}-{i:07d}" for i in range(n)]
    bench.loke.set_customers(org, (make_customer(cid, NOW) for cid in ids))
    bench.loke.set_list(org, LIST_ID, "Bench list", ids)
    check_same_pages(bench.loke, org, LIST_ID, [0, (n // PAGE_SIZE // 2) * PAGE_SIZE])
    connect_with_list(bench, sink, org, batch_size, rps)

    services = start_workers(bench.stack, workers, f"n{n}")
    pids = [s.process.pid for s in services]
    try:
        print(f"{n:,} members: first full sync ...", flush=True)
        with RssSampler(pids) as first_rss:
            first = sync_and_wait(bench, sink, org, 120 + n / 100, f"first sync {n:,}")
        stored = len(sink.members(org, LIST_ID))
        print(
            f"  first sync: {first.seconds:.1f} s, CRM holds {stored:,} members,"
            f" ops {dict(first.phase.ops)}",
            flush=True,
        )
        if stored != n:
            raise RuntimeError(f"CRM holds {stored} members after the first sync, not {n}")

        churn = round(n * CHURN)
        removed = ids[::100][:churn]  # spread over the whole list
        gone = set(removed)
        new = [f"{org}-new-{i:07d}" for i in range(churn)]  # unknown to the mirror
        for cid in new:
            bench.loke.upsert_customer(org, make_customer(cid, NOW))
        members_now = [m for m in ids if m not in gone] + new
        bench.loke.set_list(org, LIST_ID, "Bench list", members_now)

        if settle:
            settled = settle_database(bench)
            print(f"  database settled: VACUUM ANALYZE in {settled:.1f} s", flush=True)

        cpu_groups = {
            "workers": lambda: [p for pid in pids for p in process_tree(pid)],
            "postgres": lambda: pids_named("postgres"),
            "redis": lambda: pids_named("redis-server"),
            "bench (fake LOKE, CRM)": lambda: [os.getpid()],
        }
        bench.loke.latency = loke_latency  # the raw GETs and the resync meet the same LOKE
        with CpuMeter(cpu_groups) as raw_cpu:
            raw1, raw_pages, raw_bytes = raw_get_pages(bench.loke.url, org, LIST_ID)
        print(f"  raw GET: {raw1:.2f} s for {raw_pages} pages; {raw_cpu.describe()}", flush=True)
        with RssSampler(pids) as second_rss, CpuMeter(cpu_groups) as resync_cpu:
            second = sync_and_wait(
                bench, sink, org, 120 + n / 200, f"resync {n:,}", at_end=resync_cpu.stop
            )
        print(f"  resync: {resync_cpu.describe()}", flush=True)
        hwm = max(tree_hwm_kb(pid) for pid in pids)
        raw2, _, _ = raw_get_pages(bench.loke.url, org, LIST_ID)
        bench.loke.latency = 0.0
        print(f"  resync: {second.seconds:.2f} s; raw GET again: {raw2:.2f} s", flush=True)
    finally:
        stop_services(bench.stack, services)

    phase = second.phase
    expected_ok = (
        phase.ops.get("list.add", 0) == churn
        and phase.ops.get("list.remove", 0) == churn
        and phase.ops.get("contact.upsert", 0) == churn
        and set(phase.ops) <= {"list.add", "list.remove", "contact.upsert"}
    )
    identity_ok = (
        phase.added == Counter(dict.fromkeys(new, 1))
        and phase.removed == Counter(dict.fromkeys(removed, 1))
        and phase.upserted == Counter(dict.fromkeys(new, 1))
    )
    final_ok = sink.members(org, LIST_ID) == set(members_now)
    return SizeResult(
        members=n,
        churn=churn,
        raw_seconds=[raw1, raw2],
        raw_pages=raw_pages,
        raw_mb=raw_bytes / 1e6,
        first=first,
        second=second,
        expected_ok=expected_ok,
        identity_ok=identity_ok,
        final_ok=final_ok,
        first_rss_mb=max(first_rss.peak_kb.values()) / 1024,
        second_rss_mb=max(second_rss.peak_kb.values()) / 1024,
        hwm_mb=hwm / 1024,
        resync_cpu=resync_cpu.total,
    )


# -- sharing the machine ----------------------------------------------------------------------
def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def other_benches() -> list[str]:
    found = subprocess.run(
        ["pgrep", "-af", r"python -m bench\."], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    mine = _ancestors()
    return [line for line in found if int(line.split()[0]) not in mine]


def wait_for_other_benches(limit: float = 1200, every: float = 20) -> None:
    """Redis db 12 and the two cores are shared: start only when no other bench runs."""
    deadline = time.monotonic() + limit
    while others := other_benches():
        if time.monotonic() > deadline:
            raise SystemExit(f"other benches still running after {limit:.0f} s: {others}")
        print(f"waiting for other benches: {others}", flush=True)
        time.sleep(every)


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.lists", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 50k members (< 2 min)")
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="list sizes, small first (20,000 200,000)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker instances")
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--no-wait", action="store_true", help="do not wait for other benches")
    parser.add_argument(
        "--loke-latency", type=float, default=0.0, help="seconds each LOKE page takes"
    )
    parser.add_argument(
        "--no-settle",
        action="store_true",
        help="resync right after the first sync, without VACUUM ANALYZE between",
    )
    args = parser.parse_args(argv)
    sizes = args.sizes or ([10_000, 50_000] if args.quick else [20_000, 200_000])
    workers = WorkerSettings(
        args.workers, args.pool, args.concurrency, (QueueName.LISTS, QueueName.DELIVERY)
    )
    batch_size, rps = 1000, 1000.0
    if not args.no_wait:
        wait_for_other_benches()

    results: list[SizeResult] = []
    with bench_stack("lists") as bench, FakeCrm(CRM_SECRET, counting=True) as sink:
        bench.loke.page_size = PAGE_SIZE
        serve_member_pages_by_slice(bench.loke)
        print(
            f"workers: {workers.describe()}, started per list size (fresh processes);"
            f" destination batchSize {batch_size}, maxRequestsPerSecond {rps:g};"
            f" FakeLoke page size {PAGE_SIZE}; churn {CHURN:.0%} removed + {CHURN:.0%} added"
            " (new customers, unknown to the mirror); the customer backfill that connecting"
            " starts stays queued on `backfill` (no worker consumes it); logs in"
            f" {bench.log_dir}; between the syncs the database is"
            f" {'not settled' if args.no_settle else 'settled (VACUUM ANALYZE)'}",
            flush=True,
        )
        start_gunicorn(bench.stack, "receiver", "app.wsgi:app", bench.port, 2)
        for n in sizes:
            results.append(
                run_size(
                    bench,
                    sink,
                    workers,
                    n,
                    batch_size,
                    rps,
                    settle=not args.no_settle,
                    loke_latency=args.loke_latency,
                )
            )
        sink_errors = sink.violations() + ["bad signature"] * sink.bad_signatures
        duplicates = len(sink.duplicate_batch_ids)

    print()
    print_table(
        ["members", "pages", "MB", "raw GET s (x2)", "first sync s", "resync s", "finished_at s",
         "ratio resync/raw"],
        [
            [r.members, r.raw_pages, r.raw_mb,
             " / ".join(f"{s:.2f}" for s in r.raw_seconds), r.first.seconds, r.second.seconds,
             r.second.run_seconds, r.ratio]
            for r in results
        ],
    )  # fmt: skip
    print()
    print_table(
        ["members", "churn", "list.add", "list.remove", "contact.upsert", "other ops",
         "run adds/removes", "exact counts", "exact ids", "CRM == LOKE"],
        [
            [r.members, f"{r.churn}+{r.churn}", r.second.phase.ops.get("list.add", 0),
             r.second.phase.ops.get("list.remove", 0),
             r.second.phase.ops.get("contact.upsert", 0),
             sum(v for k, v in r.second.phase.ops.items()
                 if k not in ("list.add", "list.remove", "contact.upsert")),
             f"{r.second.adds}/{r.second.removes}", str(r.expected_ok), str(r.identity_ok),
             str(r.final_ok)]
            for r in results
        ],
    )  # fmt: skip
    print()
    print_table(
        ["members", "peak RSS first sync MB", "peak RSS resync MB", "VmHWM MB"],
        [[r.members, r.first_rss_mb, r.second_rss_mb, r.hwm_mb] for r in results],
    )
    print(
        "(per worker instance, the highest of the instances: peak RSS = highest 0.1 s sample of"
        " its process tree; VmHWM = the kernel's own peak, summed over the tree)"
    )
    print(f"CRM: {duplicates} duplicate batches, {len(sink_errors)} errors {sink_errors[:3]}")
    big, small = results[-1], results[0]
    print()
    print(f"raw GET of {big.members:,} members  {big.raw:.2f} s (median of 2)")
    print(f"resync with {big.churn}+{big.churn} churn  {big.second.seconds:.2f} s")
    print(f"LOKE latency {args.loke_latency:g} s a page")
    goal = (
        "goal <= 1.10"
        if args.loke_latency >= 0.1
        else "no goal: LOKE answering at once, this measures the fake's CPU; --loke-latency 0.1"
    )
    print(f"ratio resync/raw GET = {big.ratio:.2f} ({goal})")
    cores = len(os.sched_getaffinity(0))  # (under `taskset`, the cores it allows)
    floor = big.resync_cpu / cores
    print(
        f"the resync's CPU ({big.resync_cpu:.2f} CPU-s, all measured) spread perfectly over"
        f" {cores} cores: >= {floor:.2f} s, ratio >= {floor / big.raw:.2f}"
    )
    print(
        f"churn delivered exactly: {big.expected_ok and big.identity_ok and big.final_ok}"
        " (goal: True)"
    )
    peak = max(big.first_rss_mb, big.second_rss_mb)
    small_peak = max(small.first_rss_mb, small.second_rss_mb)
    print(
        f"worker peak RSS {peak:.0f} MB at {big.members:,} vs {small_peak:.0f} MB at"
        f" {small.members:,} members (goal <= 300 MB, not growing with size)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
