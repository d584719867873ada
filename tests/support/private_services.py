"""Private Redis and PostgreSQL servers on spare 127.0.0.1 ports, for tests that break them.

The fault suite restarts, stops and flushes its backing services; doing that to the machine's
shared instances would break every other test run and bench on it. These are the stock
binaries (`redis-server`; `initdb`/`pg_ctl` from /usr/lib/postgresql/*/bin) with their data in
a temporary folder that is removed on close. PostgreSQL refuses to run as root, so when we are
root the cluster belongs to the `postgres` OS user and its commands run through `runuser`.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import psycopg
import redis

from tests.support.processes import free_port


class PrivateRedis:
    """A `redis-server` without persistence: a restart comes back empty, like a lost broker."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="lokesync-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                "--logfile", str(self.dir / "redis.log")]  # fmt: skip
        self.process = subprocess.Popen(argv, start_new_session=True)
        _wait_for(self._answers, 20, f"redis-server on port {self.port}")

    def stop(self) -> None:
        """SIGKILL: queued messages, locks and kicks vanish as in a crash."""
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def ensure_running(self) -> None:
        if not self._answers():
            self.stop()
            self.start()

    def flushall(self) -> None:
        with redis.Redis.from_url(self.url) as client:
            client.flushall()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _answers(self) -> bool:
        try:
            with redis.Redis.from_url(self.url, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False


class PrivatePostgres:
    """One PostgreSQL cluster, initialised once; callers create a database per scenario."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("no initdb under /usr/lib/postgresql/*/bin: install postgresql")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="lokesync-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "--no-instructions")  # fmt: skip

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        # fsync off: this cluster is thrown away and its crashes are process crashes, which
        # lose nothing the OS already has; it keeps CI's shared disk out of the timings.
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
                   " -c max_connections=200")  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "start")  # fmt: skip
        _wait_for(self._answers, 30, f"PostgreSQL on port {self.port}")

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` is a crash: every connection drops, open transactions are lost."""
        with suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def ensure_running(self) -> None:
        if not self._answers():
            self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, cwd=self.dir)

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=1) as connection:
                connection.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False


def _wait_for(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not answering after {timeout}s")
