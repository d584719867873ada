"""How LOKE signs a webhook: `X-Event-Signature: sha256=<hex HMAC-SHA256 of the raw body>`."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Event-Signature"


def sign(body: bytes, secret: str) -> str:
    """The `X-Event-Signature` value LOKE sends with `body` for a subscription's `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
