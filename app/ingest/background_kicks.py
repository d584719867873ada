"""Kicks sent from a background thread, so a webhook's answer never waits on Redis or the broker.

The receiver only records that a kick is wanted; this thread sends it right away, once for any
number of webhooks that arrived meanwhile. The event is already committed, so a kick that fails
(or a process that dies first) loses nothing: it is retried here, and the inbox sweeper is the
backstop. While kicks fail, `healthy` is False and the receiver answers 503 (after storing), so
LOKE keeps retrying and the operator sees the outage.

The thread is a daemon (it must never keep a process alive), so the interpreter would kill it
at exit with kicks still wanted: a gunicorn worker stopped by a deploy would leave the events of
its last requests to the sweeper, tens of seconds later. At exit, what is wanted is sent first,
for at most FLUSH_AT_EXIT_SECONDS in all.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref

from app.core.kicks import Kicks

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
# Well within gunicorn's graceful_timeout (gunicorn.conf.py), which a stopping worker has in all.
FLUSH_AT_EXIT_SECONDS = 2.0


class BackgroundKicks:
    """Kicks wanted by request threads, sent by one thread of this process."""

    def __init__(self, kicks: Kicks) -> None:
        self._kicks = kicks
        self._wanted: set[tuple[str, tuple[str, ...]]] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = threading.Event()
        self._owner_pid: int | None = None
        self._thread: threading.Thread | None = None
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

    def close(self, timeout: float) -> bool:
        """Send what is wanted, for at most `timeout` seconds, then stop this process's thread.
        True if nothing was left unsent (what is left, the inbox and outbox sweepers find)."""
        if self._owner_pid != os.getpid():
            return True  # no thread here: none started, or the one of the process we forked from
        sent = self._idle.wait(timeout)
        self._stop.set()
        self._wake.set()
        if not sent:
            with self._lock:
                left = len(self._wanted)
            log.warning("%d kick(s) not sent before exit; the sweepers will find their work", left)
        return sent

    def _ensure_thread(self) -> None:
        # A forked process (gunicorn worker) does not inherit the parent's thread: start its own.
        if self._owner_pid != os.getpid():
            self._owner_pid = os.getpid()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="kicks", daemon=True)
            self._thread.start()
            _RUNNING.add(self)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
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
                if self._stop.wait(RETRY_SECONDS):
                    return
                self._wake.set()
                continue
            with self._lock:
                if not self._wanted:
                    self._idle.set()


# Every instance with a thread in this process (weakly: test apps come and go).
_RUNNING: weakref.WeakSet[BackgroundKicks] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """Interpreter exit (a gunicorn worker's included, after its last request): send what is
    wanted, sharing one bound between every instance, before the daemon threads are killed."""
    deadline = time.monotonic() + FLUSH_AT_EXIT_SECONDS
    for kicks in list(_RUNNING):
        kicks.close(max(deadline - time.monotonic(), 0.0))
