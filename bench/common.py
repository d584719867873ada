"""What both benches share: a throwaway stack (database, Redis db, fakes, real processes),
signed webhook bodies, a fast HTTP client and small printing helpers.

Processes are started through `tests.support.processes` so they are configured exactly as the
integration tests configure them (environment only), and every one of them is stopped, and the
database dropped, however the bench ends (normal exit, exception, Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import signal
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
import requests

from app.core.processes import web_command, worker_command
from app.core.queues import QueueName
from app.store.migrate import upgrade
from devtools.crm import FakeCrm
from tests.conftest import ADMIN_TOKEN, LOKE_CLIENT_ID, LOKE_CLIENT_SECRET
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, sign
from tests.support.processes import (
    LIVE_QUEUES,
    ROOT,
    Service,
    Stack,
    _answers,
    _wait_until,
    free_port,
    fresh_postgres_database,
    fresh_redis_database,
    service_env,
)

REDIS_DB = 12  # tests use 11
CRM_SECRET = "bench-crm-secret"
LOG_ROOT = ROOT / "artifacts" / "bench"


class Interrupted(KeyboardInterrupt):
    """SIGTERM, turned into an exception so every `finally` and context manager runs."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signum}")


@dataclass
class BenchStack:
    stack: Stack
    loke: FakeLoke
    crm: FakeCrm
    database_url: str
    redis_url: str
    port: int  # the real receiver's port
    log_dir: Path

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def bench_stack(name: str) -> Iterator[BenchStack]:
    """A fresh PostgreSQL database (migrated), Redis db 12, a FakeLoke and a FakeCrm, and a
    Stack whose processes get production-like environment configuration."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    log_dir = LOG_ROOT / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with ExitStack() as exits:
        database_url = exits.enter_context(fresh_postgres_database(prefix="lokesync_bench"))
        upgrade(database_url)
        redis_url = exits.enter_context(fresh_redis_database(REDIS_DB))
        loke = exits.enter_context(FakeLoke(LOKE_CLIENT_ID, LOKE_CLIENT_SECRET))
        crm = exits.enter_context(FakeCrm(CRM_SECRET))
        port = free_port()
        stack = Stack(service_env(database_url, redis_url, loke.url, port), log_dir)
        exits.callback(stack.stop_all)  # runs first: processes go before their database
        yield BenchStack(stack, loke, crm, database_url, redis_url, port, log_dir)


# -- processes -------------------------------------------------------------------------------
def gunicorn_argv(app_spec: str, port: int, workers: int) -> list[str]:
    """The receiver's flags (as `Stack.web` gives them), for any WSGI app."""
    return web_command(f"127.0.0.1:{port}", workers, access_log=False, wsgi_app=app_spec)


def start_gunicorn(stack: Stack, name: str, app_spec: str, port: int, workers: int) -> Service:
    service = stack._start(name, gunicorn_argv(app_spec, port, workers))
    _wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), service, 30)
    return service


@dataclass(frozen=True)
class WorkerSettings:
    instances: int = 2
    pool: str = "threads"
    concurrency: int = 4
    queues: tuple[QueueName, ...] = LIVE_QUEUES

    def describe(self) -> str:
        return (
            f"{self.instances} worker instance(s), -P {self.pool} -c {self.concurrency}"
            f" -Q {','.join(self.queues)}, prefetch 1, acks_late (the service's Celery config)"
        )


def start_workers(
    stack: Stack, settings: WorkerSettings, tag: str, include: Sequence[str] = ()
) -> list[Service]:
    """Start all instances at once (so none gets a head start), then wait until all are ready."""
    services = []
    for n in range(1, settings.instances + 1):
        name = f"{tag}-w{n}"
        argv = worker_command(
            settings.queues,
            ["-n", f"{name}@%h", "-P", settings.pool, "-c", str(settings.concurrency),
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        )  # fmt: skip
        if include:
            argv += ["--include", ",".join(include)]
        services.append(stack._start(name, argv))
    for service in services:
        _wait_until(_ready_check(service), service, 60)
    return services


def _ready_check(service: Service) -> Callable[[], bool]:
    # The whole log: a busy worker can write hundreds of lines right after "ready.".
    return lambda: " ready." in service.log_path.read_text(errors="replace")


_LOG_TIME = re.compile(r'^\{"time": "(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})".*ready\.')


def ready_time(service: Service) -> float:
    """Epoch time of the worker's own "ready." log line (its consumer starts right then)."""
    for line in service.log_path.read_text(errors="replace").splitlines():
        found = _LOG_TIME.match(line)
        if found:
            stamp = dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
            return stamp.timestamp()  # Celery logs local time, as time.time() counts it
    raise RuntimeError(f"no ready line in {service.log_path}")


def stop_services(stack: Stack, services: Sequence[Service]) -> None:
    for service in services:
        service.stop()
        if service in stack.services:
            stack.services.remove(service)


# -- the organization and its webhooks --------------------------------------------------------
def connect_org(bench: BenchStack, org_id: str, **destination: object) -> str:
    """Connect through the admin API as an operator would; returns the webhook secret."""
    bench.loke.add_org(org_id)
    dest: dict[str, object] = {
        "type": "http",
        "url": bench.crm.url,
        "secret": CRM_SECRET,
        "batchSize": 100,
        "maxRequestsPerSecond": 50,
    } | destination
    answer = requests.put(
        f"{bench.web_url}/api/orgs/{org_id}",
        json={"destination": dest},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    if answer.status_code != 201:
        raise RuntimeError(f"connecting {org_id}: {answer.status_code} {answer.text}")
    secret: str = bench.loke.secret_for(org_id)
    return secret


Signed = tuple[str, bytes]  # (X-Event-Signature, raw body)


def signed(body: dict[str, Any], secret: str) -> Signed:
    raw = json.dumps(body, separators=(",", ":")).encode()
    return sign(raw, secret), raw


def customer_updates(org_id: str, secret: str, n: int, run: str) -> list[Signed]:
    """`n` distinct signed customer.updated bodies (~0.8 KB each): every one is new to the
    receiver, so none gets the cheap "duplicate" answer. `run` keeps runs apart."""
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    template = customer_event("customer.updated", org_id, make_customer("CUSTTEMPLATE", start))
    text = json.dumps(template, separators=(",", ":"))
    out = []
    for i in range(n):
        stamp = (start + dt.timedelta(milliseconds=i)).isoformat(timespec="milliseconds")
        raw = (
            text.replace("CUSTTEMPLATE", f"C{run}{i:08d}")
            .replace("custtemplate", f"c{run}{i:08d}")
            .replace("2026-11-01T00:00:00.000Z", stamp.replace("+00:00", "Z"))
            .encode()
        )
        out.append((sign(raw, secret), raw))
    return out


def inbox_counts(database_url: str, org_id: str) -> dict[str, int]:
    """Inbox rows of one organization by status."""
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT status, count(*) FROM inbox WHERE org_id = %s GROUP BY status", (org_id,)
        ).fetchall()
    return {str(status): int(n) for status, n in rows}


# -- a small, fast HTTP/1.1 client (one connection per request, as gunicorn sync closes them) --
def raw_request(port: int, path: str, item: Signed) -> bytes:
    signature, body = item
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-Event-Signature: {signature}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def send_raw(port: int, payload: bytes, timeout: float = 30) -> int:
    """Send one prepared request; the answer's status (0 when the connection failed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(payload)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in chunk and _complete(b"".join(chunks)):
                    break
    except OSError:
        return 0
    data = b"".join(chunks)
    return int(data[9:12]) if data.startswith(b"HTTP/1.") and len(data) >= 12 else 0


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return found is not None and len(body) >= int(found.group(1))


def post_all(port: int, path: str, items: Sequence[Signed], concurrency: int = 16) -> Counter[int]:
    """Deliver every body once, `concurrency` at a time; statuses counted."""
    payloads = [raw_request(port, path, item) for item in items]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    indices = count()

    def run() -> None:
        local: Counter[int] = Counter()
        while (i := next(indices)) < len(payloads):
            local[send_raw(port, payloads[i])] += 1
        with lock:
            statuses.update(local)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def open_loop(
    port: int, payloads: Sequence[bytes], rate: float, start_at: float, threads: int
) -> list[tuple[float, float, int]]:
    """Send payload i at `start_at + i / rate` (epoch seconds) whatever happened before: an open
    loop, so a slow answer does not slow the arrivals down. Returns (lag, latency, status) per
    request, where lag = how late the generator started it and latency counts from the
    scheduled moment (so generator lag would show up as latency, never hide it)."""
    results: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    indices = count()

    def run() -> None:
        local = []
        while (i := next(indices)) < len(payloads):
            scheduled = start_at + i / rate
            pause = scheduled - time.time()
            if pause > 0:
                time.sleep(pause)
            began = time.time()
            status = send_raw(port, payloads[i])
            local.append((began - scheduled, time.time() - scheduled, status))
        with lock:
            results.extend(local)

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


# -- printing ---------------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# -- memory (no psutil: /proc) ----------------------------------------------------------------
def _status_kb(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM, ...); 0 when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (pool children of a prefork worker, for instance)."""
    pids, index = [pid], 0
    while index < len(pids):
        for task in Path(f"/proc/{pids[index]}/task").glob("*/children"):
            with suppress(OSError):
                pids.extend(int(child) for child in task.read_text().split())
        index += 1
    return pids


def tree_rss_kb(pid: int) -> int:
    """Resident set size of a process and its descendants, in kB."""
    return sum(_status_kb(p, "VmRSS") for p in process_tree(pid))


def tree_hwm_kb(pid: int) -> int:
    """Sum of each process's own peak RSS (VmHWM) over the tree, in kB: an upper bound on the
    tree's peak, exact when there is a single process."""
    return sum(_status_kb(p, "VmHWM") for p in process_tree(pid))


def cpu_seconds_by_pid(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds each of these processes has used so far (a gone one is left
    out)."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        with suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return used


def pids_named(name: str) -> list[int]:
    """Every process whose command is exactly `name` (postgres, redis-server)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        with suppress(OSError):
            if stat.read_text().strip() == name:
                found.append(int(stat.parent.name))
    return found


class CpuMeter:
    """CPU seconds used by groups of processes between `start` and `stop`: where a measured
    interval's CPU went, on a machine whose two cores everything shares. Counted per process:
    one that ends in between (a PostgreSQL backend whose client closed) takes with it only
    what it used since the start, never what it used before (which made a group negative)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.used: dict[str, float] = {}
        self.ended: dict[str, int] = {}  # processes gone by the end: their last CPU is missed
        self._began: dict[str, dict[int, float]] = {}
        self._wall = 0.0
        self._stopped = False
        self.wall = 0.0

    def __enter__(self) -> CpuMeter:
        self._began = {name: cpu_seconds_by_pid(find()) for name, find in self.groups.items()}
        self._wall = time.monotonic()
        self._stopped = False
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End the interval here (once; the end of the `with` block otherwise)."""
        if self._stopped:
            return
        self._stopped = True
        self.wall = time.monotonic() - self._wall
        for name, find in self.groups.items():
            began = self._began[name]
            now = cpu_seconds_by_pid(set(began) | set(find()))  # (new ones count from 0)
            self.used[name] = sum(used - began.get(pid, 0.0) for pid, used in now.items())
            self.ended[name] = len(began.keys() - now.keys())

    @property
    def total(self) -> float:
        return sum(self.used.values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {seconds:.2f}" for name, seconds in self.used.items())
        cores = self.total / self.wall if self.wall else 0.0
        ended = sum(self.ended.values())
        gone = f"; {ended} process(es) ended in between, their last CPU uncounted" if ended else ""
        return (
            f"CPU s {parts}; total {self.total:.2f} in {self.wall:.2f} s wall"
            f" ({cores:.2f} cores){gone}"
        )


class RssSampler:
    """Samples the RSS of process trees every `interval` seconds on a daemon thread; `peak_kb`
    keeps each root pid's highest sampled tree RSS."""

    def __init__(self, pids: Sequence[int], interval: float = 0.1) -> None:
        self.pids = list(pids)
        self.interval = interval
        self.peak_kb: dict[int, int] = dict.fromkeys(self.pids, 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

    def _sample(self) -> None:
        for pid in self.pids:
            self.peak_kb[pid] = max(self.peak_kb[pid], tree_rss_kb(pid))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)
