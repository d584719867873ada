"""What orders changes: keys that compare the same way on PostgreSQL and SQLite, and digests
that break ties, so that the order changes arrive in never matters."""

from __future__ import annotations

import hashlib
import json
from typing import Any

StatsKey = tuple[int, int, str]
# A profile known only from a payment, a statistics event or a list member has no timestamp: it
# sorts below every real one, even a (nonsensical) updatedAt before 1970.
PARTIAL_PROFILE = -(2**62)
NO_STATS: StatsKey = (0, -1, "")  # sorts below any real statistics


def digest(value: dict[str, Any]) -> str:
    """A stable hash of a JSON value: the last tie-break between two states."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
