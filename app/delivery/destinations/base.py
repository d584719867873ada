"""What every destination (the generic `http` one, HubSpot ...) promises the sender."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Batch:
    """The operations of one request to the CRM, under one id (its idempotency key)."""

    batch_id: str
    org_id: str
    operations: list[dict[str, Any]]


class RetryableDeliveryError(Exception):
    """Try again later: 429, 5xx, a timeout, a refused connection."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentDeliveryError(Exception):
    """The destination refused the batch for good (a 4xx other than 429): a dead letter."""

    def __init__(self, reason: str, status: int | None = None, answer: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.answer = answer


class Destination(Protocol):
    """Sends batches to one CRM."""

    def send(self, batch: Batch) -> None:
        """Deliver the batch, or raise RetryableDeliveryError / PermanentDeliveryError."""


class DestinationConfig(BaseModel):
    """Settings every destination shares. Subclasses add `type` and their own fields."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    batch_size: int = Field(100, alias="batchSize", ge=1, le=1000)
    max_requests_per_second: float = Field(10.0, alias="maxRequestsPerSecond", gt=0, le=1000)
    # Write-only: accepted on PUT, stored encrypted, never returned.
    secret: str | None = Field(None, min_length=8, max_length=500, exclude=True)
