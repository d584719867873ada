"""When to try again after a transient failure (a CRM batch, a LOKE call): exponential backoff
with jitter, Retry-After honoured. Both sides of the service use this one policy."""

from __future__ import annotations

import datetime as dt
import email.utils
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
    # Jitter, not a secret: `random` is the right tool here.
    delay: float = step / 2 + random.uniform(0, step / 2)  # nosec B311
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP_SECONDS))
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if it says any."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def is_retryable_status(status: int) -> bool:
    """429 and 5xx may succeed later; any other 4xx will not."""
    return status == 429 or status >= 500
