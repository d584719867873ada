"""What the fake was asked and what it answered: counts by route and by status."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RequestCounts:
    """Requests seen (the demo page's `/_fake/` ones aside)."""

    total: int = 0
    by_route: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, route)
    by_status: Counter[int] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)  # 429s by policyName
    locked: int = 0  # 423s
    unauthorized: int = 0  # 401s

    def record(self, method: str, route: str, status: int, policy: str | None) -> None:
        """Count one answered request."""
        self.total += 1
        self.by_route[method, route] += 1
        self.by_status[status] += 1
        if policy is not None:
            self.rate_limited[policy] += 1
        self.locked += status == 423
        self.unauthorized += status == 401

    def copy(self) -> RequestCounts:
        """A snapshot that later requests do not change."""
        return RequestCounts(
            self.total,
            Counter(self.by_route),
            Counter(self.by_status),
            Counter(self.rate_limited),
            self.locked,
            self.unauthorized,
        )

    def as_json(self) -> dict[str, object]:
        """The counts for `GET /_fake/state`."""
        return {
            "total": self.total,
            "byRoute": {f"{m} {r}": n for (m, r), n in sorted(self.by_route.items())},
            "byStatus": {str(s): n for s, n in sorted(self.by_status.items())},
            "rateLimited": dict(self.rate_limited),
            "locked": self.locked,
            "unauthorized": self.unauthorized,
        }
