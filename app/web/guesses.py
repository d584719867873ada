"""Failed sign-ins and admin API tokens, counted per client address: after
AUTH_FAILURES_PER_MINUTE failures within a minute, that address is answered 429 (with
Retry-After) until the minute since its first failure has passed.

While an address is limited every credential it sends is refused unchecked, the right one
included: answering the right token while wrong ones get 429 would tell a guesser which guess
was right, and the limit would limit nothing. The cost: someone sharing the admin's address
can keep the admin out of sign-in and the API for a minute at a time; signed-in dashboard
sessions are not touched, and other addresses are not affected. Successes are never counted.
Requests that carry no credential at all are not guesses and are not counted.

The address is `request.remote_addr`, never X-Forwarded-For (a guesser would pick a new address
per try). Behind a load balancer that is the balancer's address, shared by every client, unless
TRUSTED_PROXY_HOPS says how many proxies' X-Forwarded-For to trust (the factory's ProxyFix).

The counts live in the shared Redis when there is one (every web process of every machine
counts together: one key per address, created with its expiry by one atomic script), else in
this process's memory (the embedded mode: one machine).

Why not flask-limiter: it limits requests, and counting only failures means deciding after
the handler answered (its `deduct_when`); it would bring `limits` and its own dependencies and
a second Redis connection configured from a URI beside the one the service already has, with
its short timeouts; and the sign-in page's 429 needs a page of its own anyway. What is needed
here is one counter per address and window: this module.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import redis
from flask import current_app, request

from app.core.services import current_services

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
KEY_PREFIX = "loke-sync:auth-failures:"
MAX_ADDRESS_LENGTH = 100  # an IPv6 address with its zone fits; a key never grows past it

# INCR and the expiry in one step: a key left without an expiry (a crash between two calls)
# would lock its address out for good. The window starts at the first failure.
_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
"""


class Guesses:
    """Failed credential attempts per address, in Redis (shared) or in memory (this process)."""

    def __init__(
        self,
        store: redis.Redis | None,
        limit: int,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = store
        self._limit = limit
        self._window = window_seconds
        self._clock = clock  # the memory store's; Redis keeps its own time for its keys
        self._lock = threading.Lock()
        self._memory: dict[str, tuple[float, int]] = {}  # address -> (window start, failures)
        self._count = store.register_script(_COUNT) if store is not None else None

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until `address` may try again, or None when it may try now."""
        if self._redis is None:
            return self._memory_retry_after(address)
        key = self._key(address)
        try:
            pipe = self._redis.pipeline()
            pipe.get(key)
            pipe.pttl(key)
            failures, left_ms = pipe.execute()
        except redis.RedisError as exc:
            _warn_open(exc)
            return None
        if failures is None or int(failures) < self._limit or int(left_ms) <= 0:
            return None
        return max(1, math.ceil(int(left_ms) / 1000))

    def failed(self, address: str) -> None:
        """Count one failed attempt from `address`."""
        if self._count is None:
            self._memory_failed(address)
            return
        try:
            self._count(keys=[self._key(address)], args=[math.ceil(self._window * 1000)])
        except redis.RedisError as exc:
            _warn_open(exc)

    def _memory_retry_after(self, address: str) -> int | None:
        with self._lock:
            started, failures = self._memory.get(address, (0.0, 0))
        left = started + self._window - self._clock()
        if failures < self._limit or left <= 0:
            return None
        return max(1, math.ceil(left))

    def _memory_failed(self, address: str) -> None:
        now = self._clock()
        with self._lock:
            # Forget windows that have passed, so that memory holds only the last minute's
            # addresses however many a guesser goes through.
            for stale in [a for a, (s, _) in self._memory.items() if s + self._window <= now]:
                del self._memory[stale]
            started, failures = self._memory.get(address, (now, 0))
            self._memory[address] = (started, failures + 1)

    @staticmethod
    def _key(address: str) -> str:
        return KEY_PREFIX + address[:MAX_ADDRESS_LENGTH]


def _warn_open(exc: Exception) -> None:
    # Fail open: the tokens are long enough not to be guessed in the minutes Redis is down,
    # and refusing every sign-in then would lock the admin out exactly when they are needed.
    log.warning("failed sign-in limiter unavailable (Redis: %s): not limiting", exc)


def current_guesses() -> Guesses:
    """This app's counter, made on first use from AUTH_FAILURES_PER_MINUTE and the shared
    Redis (in memory, it must outlive the request: it lives in the app's extensions)."""
    found = current_app.extensions.get("auth_guesses")
    if not isinstance(found, Guesses):
        services = current_services()
        made = Guesses(services.redis, services.settings.auth_failures_per_minute)
        found = current_app.extensions.setdefault("auth_guesses", made)
    return found


def client_address() -> str:
    """The address attempts are counted for (see the module's docstring about proxies)."""
    return request.remote_addr or "unknown"
