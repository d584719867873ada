"""The generic `http` destination: signed JSON batches POSTed to one URL (see the README)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Literal

import requests
from pydantic import AnyHttpUrl

from app.core.backoff import is_retryable_status, parse_retry_after
from app.core.timestamps import to_iso
from app.delivery.destinations.base import (
    Batch,
    DestinationConfig,
    PermanentDeliveryError,
    RetryableDeliveryError,
)

ANSWER_KEPT = 2000  # characters of a refusal kept in the dead letter


class HttpConfig(DestinationConfig):
    """The `http` destination: signed JSON batches POSTed to `url`."""

    type: Literal["http"]
    url: AnyHttpUrl


def signature(body: bytes, secret: str) -> str:
    """The `X-Signature` of a body: `sha256=` and its hex HMAC-SHA256 with the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class HttpDestination:
    """POSTs each batch, signed, to the destination's URL."""

    def __init__(
        self, config: HttpConfig, secret: str, timeout: float, session: requests.Session
    ) -> None:
        self._url = str(config.url)
        self._secret = secret
        self._timeout = timeout
        self._session = session

    def send(self, batch: Batch) -> None:
        """One POST; the answer classified as delivered, retry later, or refused for good."""
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
        try:
            answer = self._session.post(
                self._url, data=body, headers=headers, timeout=self._timeout
            )
        except requests.Timeout:
            raise RetryableDeliveryError("timed out") from None
        except requests.RequestException as exc:
            raise RetryableDeliveryError(f"connection failed: {type(exc).__name__}") from None
        status = answer.status_code
        if 200 <= status < 300:
            return
        if is_retryable_status(status):
            raise RetryableDeliveryError(
                f"HTTP {status}", parse_retry_after(answer.headers.get("Retry-After"))
            )
        raise PermanentDeliveryError(f"HTTP {status}", status, answer.text[:ANSWER_KEPT])
