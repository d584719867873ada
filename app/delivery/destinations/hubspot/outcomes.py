"""How each operation of a batch ended, gathered step by step (contacts, orders, lists)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.delivery.destinations.base import Outcome

# Errors about the record itself: sending it again cannot help.
REFUSALS = frozenset({"VALIDATION_ERROR", "INVALID_PARAMS", "HTTP_400"})


@dataclass
class Outcomes:
    """The operations (by their position in the batch) that did not simply apply."""

    exceptions: dict[int, tuple[Outcome, str]] = field(default_factory=dict)

    def retry(self, index: int, reason: str) -> None:
        """Send it again later (a bounded number of times)."""
        self.exceptions.setdefault(index, (Outcome.RETRY, reason))

    def reject(self, index: int, reason: str) -> None:
        """HubSpot refused it for good: a dead letter of its own, with HubSpot's message."""
        self.exceptions[index] = (Outcome.REJECTED, reason)

    def error(self, index: int, error: dict[str, Any]) -> None:
        """Settle by HubSpot's error for the record: refused for good when the record itself is
        wrong (a validation error), else sent again later."""
        reason = f"{error.get('category', 'ERROR')}: {error.get('message', '')}"[:500]
        if error.get("category") in REFUSALS:
            self.reject(index, reason)
        else:
            self.retry(index, reason)

    def failed(self, index: int) -> bool:
        """Whether an earlier step already settled it otherwise."""
        return index in self.exceptions
