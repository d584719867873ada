"""A no-op Celery task for the pipeline baseline, loaded into the real worker with `--include`.

It runs inside the service's own worker app (same pool, concurrency, acks, prefetch), so the
baseline is "what these worker settings do with one trivial task per event". The only work is a
Redis INCR so the bench can tell when the last one finished, and when.
"""

from __future__ import annotations

import os
import time

import redis
from celery import shared_task

NOOP_TASK = "bench.noop"
DONE_KEY = "bench:noop:done"
FIRST_KEY = "bench:noop:first"
END_KEY = "bench:noop:end"

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client  # one client per worker process; redis-py clients are thread-safe
    if _client is None:
        _client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _client


@shared_task(name=NOOP_TASK)
def noop(target: int) -> None:
    client = _redis()
    done = int(client.incr(DONE_KEY))
    if done == 1:
        client.set(FIRST_KEY, repr(time.time()))
    if done == target:
        client.set(END_KEY, repr(time.time()))
