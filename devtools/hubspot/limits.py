"""HubSpot's limits: a rolling 10-second window per token, a daily count per account, a storm
(every request refused for a while), and the `X-HubSpot-RateLimit-*` headers of every answer.

Requests answered 429 do not count against either limit; every request of a known token counts
towards `max_in_window`, the most one token ever sent within one window (429s included), which
shows whether a client paces itself.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from typing import Any

TEN_SECONDLY = "TEN_SECONDLY_ROLLING"
DAILY = "DAILY"
_MESSAGES = {
    TEN_SECONDLY: "You have reached your ten_secondly_rolling limit.",
    DAILY: "You have reached your daily limit.",
}


class Limiter:
    """Counts requests and says which policy, if any, refuses the next one."""

    def __init__(self, per_ten_seconds: int, daily: int | None, window_seconds: float) -> None:
        self.per_ten_seconds = per_ten_seconds
        self.daily = daily
        self.window_seconds = window_seconds  # 10 s; shorter only to keep tests fast
        self.max_in_window = 0
        self._windows: dict[str, deque[float]] = {}  # token -> arrivals that counted
        self._arrivals: dict[str, deque[float]] = {}  # token -> every arrival
        self._daily_used: Counter[str] = Counter()  # account -> requests that counted
        self._storm_until = 0.0

    def set_limits(self, per_ten_seconds: int, daily: int | None) -> None:
        """New limits; what was already counted stays counted."""
        self.per_ten_seconds, self.daily = per_ten_seconds, daily

    def storm(self, until: float) -> None:
        """Refuse every request (TEN_SECONDLY_ROLLING) until this `time.monotonic()`."""
        self._storm_until = until

    def reset_daily(self) -> None:
        """A new day: every account's daily count starts again."""
        self._daily_used.clear()

    def admit(self, token: str, account: str, now: float) -> str | None:
        """Count a request arriving `now`; the refusing policy's name when it is over a limit
        (then it is not counted)."""
        arrivals = self._pruned(self._arrivals, token, now)
        arrivals.append(now)
        self.max_in_window = max(self.max_in_window, len(arrivals))
        if now < self._storm_until:
            return TEN_SECONDLY
        if self.daily is not None and self._daily_used[account] >= self.daily:
            return DAILY
        window = self._pruned(self._windows, token, now)
        if len(window) >= self.per_ten_seconds:
            return TEN_SECONDLY
        window.append(now)
        self._daily_used[account] += 1
        return None

    def headers(self, token: str | None, account: str | None, now: float) -> dict[str, str]:
        """The rate-limit headers of an answer to this token (and account), as of `now`."""
        used = len(self._pruned(self._windows, token, now)) if token is not None else 0
        headers = {
            "X-HubSpot-RateLimit-Max": str(self.per_ten_seconds),
            "X-HubSpot-RateLimit-Remaining": str(max(0, self.per_ten_seconds - used)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(round(self.window_seconds * 1000)),
        }
        if self.daily is not None:
            spent = self._daily_used[account] if account is not None else 0
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(0, self.daily - spent))
        return headers

    def daily_used(self, account: str) -> int:
        """Requests counted today for `account`."""
        return self._daily_used[account]

    def _pruned(self, held: dict[str, deque[float]], token: str, now: float) -> deque[float]:
        """The token's arrivals within the window ending `now`."""
        times = held.setdefault(token, deque())
        while times and times[0] <= now - self.window_seconds:
            times.popleft()
        return times


def rate_limited(policy: str) -> dict[str, Any]:
    """The body of a 429 for `policy`."""
    return {
        "status": "error",
        "message": _MESSAGES[policy],
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
        "category": "RATE_LIMITS",
    }
