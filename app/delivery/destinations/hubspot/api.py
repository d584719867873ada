"""HubSpot's REST API as the destination uses it: bearer auth, one total deadline per batch,
and HubSpot's answers sorted into what the sender does with them.

401/403 pause the destination (token rejected); 429 slows the token's account (the ten-second
policy) or closes it until the daily window resets; 423 waits at least two seconds; 5xx,
timeouts and refused connections are an outage, and so is a redirect (never followed). Any
other 4xx is HubSpotError, for the step that made the call to settle the records it concerns.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import zoneinfo
from typing import Any
from urllib.parse import quote

import requests

from app.core.backoff import parse_retry_after
from app.delivery.destinations.base import (
    CredentialsRejected,
    RedirectNotFollowed,
    RetryableDeliveryError,
)

# Date-versioned paths (`/crm/v3` becomes unsupported in September 2027): one place to move on.
OBJECTS = "/crm/objects/2026-03"
PROPERTIES = "/crm/properties/2026-03"
ASSOCIATIONS = "/crm/associations/2026-03"
LISTS = "/crm/lists/2026-03"
ACCOUNT_DETAILS = "/account-info/2026-09/details"

LOCKED_WAIT_SECONDS = 2.0  # HubSpot's 423 asks for at least this between upserts
# When HubSpot's daily window resets is not documented (midnight in the portal's time zone
# is likely): after a DAILY 429 the account is tried again by then at the latest.
DAILY_RECHECK_SECONDS = 3600.0
MESSAGE_KEPT = 500


class HubSpotError(Exception):
    """A 4xx HubSpot gave for a reason of the request's own (a validation error, a conflict)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.category = str(body.get("category") or "")
        self.sub_category = str(body.get("subCategory") or "")
        self.message = str(body.get("message") or f"HTTP {status}")[:MESSAGE_KEPT]
        super().__init__(f"HTTP {status} {self.category}: {self.message}")


class HubSpotApi:
    """Calls to one portal with one token, each within what is left of a deadline."""

    def __init__(
        self,
        base_url: str,
        token: str,
        http: requests.Session,
        timeout: float,
        daily_recheck_seconds: float = DAILY_RECHECK_SECONDS,
        time_zone: str | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._http = http
        self.timeout = timeout
        self._daily_recheck = daily_recheck_seconds
        self._zone = _zone(time_zone)
        self.deadline = time.monotonic() + timeout
        self.requests = 0  # made since the last `start`

    def start(self, seconds: float) -> None:
        """A new batch: count its requests from zero, all of them answered within `seconds`."""
        self.deadline = time.monotonic() + seconds
        self.requests = 0

    def get(self, path: str) -> dict[str, Any] | None:
        """GET; None for a 404."""
        try:
            return self.call("GET", path)
        except HubSpotError as exc:
            if exc.status == 404:
                return None
            raise

    def post(self, path: str, body: Any) -> dict[str, Any]:
        """POST a JSON body."""
        return self.call("POST", path, body)

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """One request; its answer's JSON object (empty for a 204), or the error it means."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RetryableDeliveryError("timed out: HubSpot took too long over this batch")
        self.requests += 1
        try:
            answer = self._http.request(
                method,
                self._base + path,
                data=None if body is None else json.dumps(body, separators=(",", ":")),
                headers=self._headers,
                timeout=min(left, self.timeout),
                allow_redirects=False,
            )
        except requests.Timeout:
            raise RetryableDeliveryError("timed out") from None
        except requests.RequestException as exc:
            raise RetryableDeliveryError(f"connection failed: {type(exc).__name__}") from None
        return self._parse(answer)

    def _parse(self, answer: requests.Response) -> dict[str, Any]:
        status = answer.status_code
        try:
            parsed = answer.json() if answer.content else {}
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else {}
        if 200 <= status < 300:
            if parsed is None:
                raise RetryableDeliveryError(f"HTTP {status} with a body that is not JSON")
            return body
        message = str(body.get("message") or f"HTTP {status}")[:MESSAGE_KEPT]
        if status in (401, 403):
            raise CredentialsRejected(f"token rejected: {message}")
        if status == 429:
            raise self._throttled(body, answer.headers.get("Retry-After"), message)
        if status == 423:
            raise RetryableDeliveryError(
                f"HTTP 423: {message}", retry_after=LOCKED_WAIT_SECONDS, throttled=True
            )
        if 300 <= status < 400:
            raise RedirectNotFollowed(status, answer.headers.get("Location"))
        if status >= 500:
            raise RetryableDeliveryError(f"HTTP {status}")
        raise HubSpotError(status, body)

    def _throttled(
        self, body: dict[str, Any], retry_after: str | None, message: str
    ) -> RetryableDeliveryError:
        if body.get("policyName") == "DAILY":
            now = dt.datetime.now(self._zone)
            midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), now.tzinfo)
            until = min(midnight, now + dt.timedelta(seconds=self._daily_recheck)).astimezone(
                dt.UTC
            )
            return RetryableDeliveryError(
                f"daily limit reached: {message}", throttled=True, until=until
            )
        return RetryableDeliveryError(
            f"HTTP 429: {message}", retry_after=parse_retry_after(retry_after), throttled=True
        )


def _zone(name: str | None) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name) if name else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def quoted(segment: str) -> str:
    """A value as one path segment (a list's name may hold slashes and spaces)."""
    return quote(segment, safe="")
