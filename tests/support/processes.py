"""Real service processes for integration tests and benches: gunicorn, Celery workers, beat.

Each process gets its configuration through the environment, exactly as in production, and
its output goes to a log file under the given folder so a failing test can show it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
import requests

from app.core.processes import beat_command, web_command, worker_command
from app.core.queues import QueueName
from tests.support.credentials import ADMIN_TOKEN, LOKE_CLIENT_ID, LOKE_CLIENT_SECRET, SECRET_KEY

LIVE_QUEUES = (QueueName.EVENTS, QueueName.DELIVERY)  # what most tests need a worker for

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def fresh_postgres_database(
    prefix: str = "lokesync_test", admin_url: str = PG_ADMIN_URL
) -> Iterator[str]:
    """A new, empty database on the machine's PostgreSQL (or the server of `admin_url`);
    dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


OWNER_KEY = "loke-sync:test-owner"
TEST_DATABASES = (11, 13, 14, 15, 10, 9, 8)  # 12 is the benches'; 0 is left to people


@contextmanager
def fresh_redis_database(index: int | None = None) -> Iterator[str]:
    """A Redis logical database of our own, emptied before and after use. Without an index,
    the first one no other test run holds: a developer's run and CI's can share a machine."""
    candidates = (index,) if index is not None else TEST_DATABASES
    for candidate in candidates:
        url = f"{REDIS_BASE_URL}/{candidate}"
        client = redis.Redis.from_url(url)
        if index is not None or client.set(OWNER_KEY, os.getpid(), nx=True, ex=3600):
            break
        client.close()
    else:
        raise RuntimeError(f"every test Redis database {TEST_DATABASES} is in use")
    client.flushdb()
    client.set(OWNER_KEY, os.getpid(), ex=3600)  # flushdb took it: hold it while in use
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


# Clocks short enough that faults heal in seconds; production defaults are in the README.
SHORT_CLOCKS = {
    "DELIVERY_BACKOFF_BASE_SECONDS": "0.2",
    "DELIVERY_BACKOFF_MAX_SECONDS": "5",
    "DELIVERY_TIMEOUT_SECONDS": "3",
    "DELIVERY_LEASE_SECONDS": "8",
    "INBOX_SWEEP_AFTER_SECONDS": "2",
    "OUTBOX_SWEEP_AFTER_SECONDS": "2",
    "SWEEP_INTERVAL_SECONDS": "1",
}


def service_env(database_url: str, redis_url: str, loke_url: str, port: int) -> dict[str, str]:
    """The environment every process of a test or bench stack gets, as in production."""

    return {
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_url,
        "REDIS_URL": redis_url,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "SECRET_KEY": SECRET_KEY,
        "LOKE_API_URL": loke_url,
        "LOKE_AUTH_URL": loke_url,
        "LOKE_CLIENT_ID": LOKE_CLIENT_ID,
        "LOKE_CLIENT_SECRET": LOKE_CLIENT_SECRET,
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port),
        # The fake CRMs listen on 127.0.0.1.
        "ALLOW_PRIVATE_DESTINATIONS": "1",
    }


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list)
    log_offset: int = 0  # where this run's output starts in the (appended) log file

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def output(self) -> str:
        """Everything this run of the process wrote (a restarted one appends to the same log)."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def child_pids(self) -> list[int]:
        """Direct children (gunicorn's workers, a prefork pool); empty when there are none."""
        pids: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            with suppress(OSError):
                pids.extend(int(pid) for pid in task.read_text().split())
        return pids

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker and any pool children."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            self.kill()


@dataclass
class Stack:
    """Starts and remembers processes sharing one environment; stops them all at the end."""

    env: dict[str, str]
    log_dir: Path
    services: list[Service] = field(default_factory=list)

    def _start(self, name: str, argv: list[str]) -> Service:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so kill() reaches children
            )
        service = Service(name, process, log_path, argv, offset)
        self.services.append(service)
        return service

    def web(self, port: int, workers: int = 2, extra: list[str] | None = None) -> Service:
        argv = web_command(f"127.0.0.1:{port}", workers, access_log=False, extra=extra or ())
        service = self._start(f"web-{port}", argv)
        _wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), service, 30)
        return service

    def worker(
        self,
        name: str,
        queues: Sequence[QueueName] = LIVE_QUEUES,
        pool: str = "threads",
        concurrency: int = 4,
    ) -> Service:
        return self.workers([name], queues, pool, concurrency)[0]

    def workers(
        self,
        names: Sequence[str],
        queues: Sequence[QueueName] = LIVE_QUEUES,
        pool: str = "threads",
        concurrency: int = 4,
    ) -> list[Service]:
        """Start one Celery worker instance per name at once, then wait until all are ready."""
        started = []
        for name in names:
            argv = worker_command(
                queues,
                ["-n", f"{name}@%h", "-P", pool, "-c", str(concurrency), "--loglevel", "INFO",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
            )  # fmt: skip
            started.append(self._start(name, argv))
        for service in started:
            _wait_until(_says("ready.", service), service, 60)
        return started

    def beat(self) -> Service:
        schedule = self.log_dir / f"beat-{uuid.uuid4().hex[:6]}.schedule"
        # "Sending due task" is a DEBUG line; the fault harness watches for it.
        argv = beat_command(["--schedule", str(schedule), "--loglevel", "DEBUG"])
        service = self._start("beat", argv)
        _wait_until(_says("beat: Starting", service), service, 60)
        return service

    def restart(self, service: Service) -> Service:
        """SIGKILL `service` if it still runs, then start the same command again and wait until
        it is ready; the new process replaces the old one in `services`."""
        service.kill()
        self.services.remove(service)
        fresh = self._start(service.name, service.argv)
        if service.name.startswith("web-"):
            port = service.argv[service.argv.index("--bind") + 1]
            _wait_until(lambda: _answers(f"http://{port}/healthz"), fresh, 30)
        elif "beat" in service.argv:
            _wait_until(_says("beat: Starting", fresh), fresh, 60)
        else:
            _wait_until(_says("ready.", fresh), fresh, 60)
        return fresh

    def stop_all(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _says(text: str, service: Service) -> Callable[[], bool]:
    return lambda: text in service.output()


def _wait_until(ready: object, service: Service, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited early:\n{service.log_tail()}")
        if callable(ready) and ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{service.name} not ready after {timeout}s:\n{service.log_tail()}")
