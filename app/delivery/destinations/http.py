"""The generic `http` destination: signed JSON batches POSTed to one URL (see the README)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from pydantic import AnyHttpUrl, Field

from app.core.backoff import is_retryable_status, parse_retry_after
from app.core.timestamps import to_iso
from app.delivery.destinations import addresses, public_http
from app.delivery.destinations.base import (
    Batch,
    BatchResult,
    DestinationConfig,
    DestinationContext,
    Outcome,
    PermanentDeliveryError,
    RedirectNotFollowed,
    RetryableDeliveryError,
)

log = logging.getLogger(__name__)

ANSWER_KEPT = 2000  # characters of a refusal kept in the dead letter
ANSWER_READ = 1024 * 1024  # bytes of an answer read at most: a CRM cannot make us hold more
CHUNK = 16 * 1024


class HttpConfig(DestinationConfig):
    """The `http` destination: signed JSON batches POSTed to `url`."""

    type: Literal["http"]
    url: AnyHttpUrl
    max_requests_per_second: float = Field(10.0, alias="maxRequestsPerSecond", gt=0, le=1000)
    # Organizations posting to one CRM account share its allowance: by default, one per host.
    rate_limit_key: str | None = Field(None, alias="rateLimitKey", min_length=1, max_length=150)

    def seconds_per_request(self) -> float:
        """One request a 1/maxRequestsPerSecond of a second."""
        return 1.0 / self.max_requests_per_second

    def account_key(self) -> str:
        """`http:` and the `rateLimitKey`, else the URL's host (and port)."""
        return f"http:{self.rate_limit_key or urlsplit(str(self.url)).netloc.lower()}"


def signature(body: bytes, secret: str) -> str:
    """The `X-Signature` of a body: `sha256=` and its hex HMAC-SHA256 with the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class HttpDestination:
    """POSTs each batch, signed, to the destination's URL."""

    def __init__(self, config: HttpConfig, secret: str, context: DestinationContext) -> None:
        self._config = config
        self._url = str(config.url)
        self._secret = secret
        self._session = context.http
        self._account = config.account_key()
        self._public_only = public_http.enforced(context)

    @property
    def account(self) -> str:
        """The account of the config (`http:` and its rateLimitKey, else the URL's host)."""
        return self._account

    def requests_for(self, operations: list[dict[str, Any]]) -> int:
        """One POST, whatever the batch holds."""
        return 1

    def prepare(self) -> HttpConfig:
        """Nothing to create: the endpoint is the integrator's own. In production its host
        must be public (raises PrivateAddress, UnknownHost, or RetryableDeliveryError when
        the resolver does not answer)."""
        if self._public_only:
            addresses.check_url(self._url)
        return self._config

    def send(self, batch: Batch, deadline_seconds: float) -> BatchResult:
        """One POST, answered within the deadline, classified: applied (with the operations
        the CRM names otherwise), retry the batch later, or refused for good. In production
        the host is checked again first: its DNS may have changed since connecting (and the
        session checks the socket itself, but not behind a proxy)."""
        if self._public_only:
            addresses.check_url(self._url)
        body = json.dumps(
            {
                "batchId": batch.batch_id,
                "organizationId": batch.org_id,
                "sentAt": to_iso(dt.datetime.now(dt.UTC)),
                "operations": batch.operations,
            },
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": batch.batch_id,
            "X-Signature": signature(body, self._secret),
        }
        deadline = time.monotonic() + deadline_seconds
        status, retry_after, location, answer = self._post(body, headers, deadline)
        if 200 <= status < 300:
            return _results(answer, len(batch.operations), batch.batch_id)
        if 300 <= status < 400:
            raise RedirectNotFollowed(status, location)
        if is_retryable_status(status):
            raise RetryableDeliveryError(
                f"HTTP {status}", parse_retry_after(retry_after), throttled=status == 429
            )
        text = answer.decode(errors="replace")
        raise PermanentDeliveryError(f"HTTP {status}", status, text[:ANSWER_KEPT])

    def _post(
        self, body: bytes, headers: dict[str, str], deadline: float
    ) -> tuple[int, str | None, str | None, bytes]:
        """The answer's status, Retry-After, Location and body, read before `deadline`
        (`requests`' own timeout bounds each read, so a CRM trickling its answer could outlast
        any of them). Redirects are never followed (see RedirectNotFollowed)."""
        try:
            answer = self._session.post(
                self._url,
                data=body,
                headers=headers,
                timeout=max(deadline - time.monotonic(), 0.001),
                allow_redirects=False,
                stream=True,
            )
            with answer:
                content = bytearray()
                # read1 returns what has arrived, so the deadline is checked as it comes.
                while chunk := answer.raw.read1(CHUNK, decode_content=True):
                    content += chunk
                    if time.monotonic() > deadline:
                        raise RetryableDeliveryError("timed out: the answer took too long")
                    if len(content) > ANSWER_READ:
                        break
                found = answer.headers
                return (
                    answer.status_code,
                    found.get("Retry-After"),
                    found.get("Location"),
                    bytes(content),
                )
        except requests.Timeout:
            raise RetryableDeliveryError("timed out") from None
        except requests.RequestException as exc:
            raise RetryableDeliveryError(f"connection failed: {type(exc).__name__}") from None


def _results(answer: bytes, count: int, batch_id: str) -> BatchResult:
    """The operations a 2xx answer names as not applied (`{"results": [{index, status,
    reason}]}`); a body without them applied everything."""
    try:
        parsed = json.loads(answer) if answer else None
    except ValueError:
        return BatchResult()
    results = parsed.get("results") if isinstance(parsed, dict) else None
    if not isinstance(results, list):
        return BatchResult()
    exceptions: dict[int, tuple[Outcome, str]] = {}
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        status = item.get("status") if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < count or status not in set(Outcome):
            log.warning("batch %s: ignoring a result the contract does not know: %r", batch_id,
                        item)  # fmt: skip
            continue
        if status != Outcome.APPLIED:
            reason = str(item.get("reason") or status)[:ANSWER_KEPT]
            exceptions[index] = (Outcome(status), reason)
    return BatchResult(exceptions)
