"""When to try a failed batch again: exponential backoff with jitter, Retry-After honoured."""

from __future__ import annotations

import random

RETRY_AFTER_CAP_SECONDS = 3600.0  # a CRM asking for more than an hour is not believed


def backoff_seconds(
    attempt: int, base: float, cap: float, retry_after: float | None = None
) -> float:
    """Delay before attempt `attempt + 1` (attempt counts from 0).

    "Equal jitter": at least half the exponential step, so retries spread out without ever
    coming back almost at once; never sooner than the destination asked.
    """
    step = min(cap, base * 2**attempt)
    delay: float = step / 2 + random.uniform(0, step / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP_SECONDS))
    return delay
