"""What every destination (the generic `http` one, HubSpot ...) promises the sender."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import requests
from pydantic import BaseModel, ConfigDict, Field

from app.core.config import Settings
from app.store.db import Database


@dataclass(frozen=True)
class Batch:
    """The operations of one request to the CRM, under one id (its idempotency key)."""

    batch_id: str
    org_id: str
    operations: list[dict[str, Any]]


@dataclass(frozen=True)
class DestinationContext:
    """What a destination is built with besides its config and secret: whose it is, how long
    a request may take, the process's HTTP session, and the store (for what a CRM's ids mean)."""

    org_id: str
    timeout: float
    http: requests.Session
    db: Database | None = None
    settings: Settings | None = None


class Outcome(StrEnum):
    """What became of one operation of a batch the CRM answered."""

    APPLIED = "applied"
    RETRY = "retry"  # send it again later
    REJECTED = "rejected"  # refused for good: a dead letter of its own


@dataclass(frozen=True)
class BatchResult:
    """The CRM's answer to a batch: every operation applied, except those it names otherwise
    (by their position in the batch), with the CRM's reason."""

    exceptions: dict[int, tuple[Outcome, str]] = field(default_factory=dict)
    # The requests sending it took, when more than `requests_for` foresaw (lookups, retries
    # of refused records): the account's allowance is charged the difference.
    requests_made: int | None = None


class RetryableDeliveryError(Exception):
    """Try the whole batch again later: 429, 5xx, a timeout, a refused connection."""

    def __init__(
        self,
        reason: str,
        retry_after: float | None = None,
        throttled: bool = False,
        until: dt.datetime | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.throttled = throttled  # the CRM account is over its rate limit (429)
        # The account is closed until then, however long (a daily limit): no backoff cap.
        self.until = until


class CredentialsRejected(RetryableDeliveryError):
    """The CRM refused our credentials (401/403): the destination pauses, shown as such, until
    they work again (a person restores the token, or PUTs a new one); nothing is dead-lettered."""


class RedirectNotFollowed(RetryableDeliveryError):
    """The CRM answered a redirect (3xx). Never followed: the signed batch would go wherever
    the CRM points, another host or an internal address. Nor a dead letter: a moved endpoint
    is a setting to fix, so the destination pauses, the reason shown, its records kept."""

    LOCATION_KEPT = 300  # characters of the Location named in the reason

    def __init__(self, status: int, location: str | None) -> None:
        where = repr(location[: self.LOCATION_KEPT]) if location else "nowhere (no Location)"
        super().__init__(
            f"HTTP {status} redirect to {where} not followed: set the destination's URL to "
            "the one that receives batches"
        )


class PermanentDeliveryError(Exception):
    """The destination refused the batch for good (a 4xx other than 429): a dead letter."""

    def __init__(self, reason: str, status: int | None = None, answer: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.answer = answer


class DestinationRefused(ValueError):
    """Connecting cannot succeed as configured (a rejected token, a portal that refuses the
    properties we need): the message, with the CRM's reason, is for the person connecting."""


class Destination(Protocol):
    """Sends batches to one CRM, on behalf of one organization."""

    @property
    def account(self) -> str:
        """The CRM account this destination spends: its rate limit is shared by everyone who
        spends the same account."""

    def requests_for(self, operations: list[dict[str, Any]]) -> int:
        """How many requests to the CRM sending these operations takes."""

    def prepare(self) -> DestinationConfig:
        """Check the credentials and create what the CRM must hold before a first batch
        (idempotent); returns the config with what was learnt (raises DestinationRefused, or
        RetryableDeliveryError when the CRM cannot be reached)."""

    def send(self, batch: Batch, deadline_seconds: float) -> BatchResult:
        """Deliver the batch within `deadline_seconds` in all, or raise
        RetryableDeliveryError / PermanentDeliveryError."""


class DestinationConfig(BaseModel):
    """Settings every destination shares. Subclasses add `type` and their own fields."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: str
    batch_size: int = Field(100, alias="batchSize", ge=1, le=1000)
    max_concurrent_requests: int = Field(4, alias="maxConcurrentRequests", ge=1, le=32)
    # Write-only: accepted on PUT, stored encrypted, never returned.
    secret: str | None = Field(None, min_length=8, max_length=500, exclude=True)

    def seconds_per_request(self) -> float:
        """How long one request uses up of the account's allowance."""
        raise NotImplementedError

    def daily_requests(self) -> int | None:
        """Requests the destination may spend per day of its CRM (None: no budget)."""
        return None

    def day_zone(self) -> str | None:
        """The time zone of the CRM's day (None: UTC)."""
        return None

    def secret_name(self) -> str:
        """What the secret is called in this destination's config (for error messages)."""
        field_info = type(self).model_fields["secret"]
        return field_info.alias or "secret"

    def account_key(self) -> str:
        """The CRM account this destination spends (its allowance is shared by every
        organization whose destination names the same account)."""
        raise NotImplementedError
