"""Kicks sent from a background thread, so a webhook's answer never waits on Redis or the broker.

The receiver only records that a kick is wanted; this thread sends it right away, once for any
number of webhooks that arrived meanwhile. The event is already committed, so a kick that fails
(or a process that dies first) loses nothing: it is retried here, and the inbox sweeper is the
backstop. While kicks fail, `healthy` is False and the receiver answers 503 (after storing), so
LOKE keeps retrying and the operator sees the outage.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from app.core.kicks import Kicks

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class BackgroundKicks:
    """Kicks wanted by request threads, sent by one thread of this process."""

    def __init__(self, kicks: Kicks) -> None:
        self._kicks = kicks
        self._wanted: set[tuple[str, tuple[str, ...]]] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._owner_pid: int | None = None
        self.healthy = True

    def kick(self, task_name: str, *args: str) -> None:
        """Want `task_name(*args)` kicked; returns at once."""
        with self._lock:
            self._wanted.add((task_name, args))
            self._idle.clear()
            self._ensure_thread()
        self._wake.set()

    def wait_idle(self, timeout: float) -> bool:
        """True once every wanted kick has been sent (tests, graceful shutdown)."""
        return self._idle.wait(timeout)

    def _ensure_thread(self) -> None:
        # A forked process (gunicorn worker) does not inherit the parent's thread: start its own.
        if self._owner_pid != os.getpid():
            self._owner_pid = os.getpid()
            threading.Thread(target=self._run, name="kicks", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                wanted, self._wanted = self._wanted, set()
            failed = False
            for task_name, args in sorted(wanted):
                try:
                    self._kicks.kick(task_name, *args)
                except Exception:
                    if self.healthy and not failed:  # once per outage, not once a second
                        log.exception("could not enqueue %s; retrying every second", task_name)
                    failed = True
                    with self._lock:
                        self._wanted.add((task_name, args))
            if failed is self.healthy:
                log.warning("queue %s", "unreachable" if failed else "reachable again")
            self.healthy = not failed
            if failed:
                time.sleep(RETRY_SECONDS)
                self._wake.set()
                continue
            with self._lock:
                if not self._wanted:
                    self._idle.set()
