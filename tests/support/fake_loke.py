"""The fake LOKE of every test is the product's LOKE sandbox (`app.sandbox`), plus helpers.

`FakeLoke` keeps the name and constructor tests and benches have always used; everything it
does (tokens, `X-Next-Page` paging, subscriptions, injected failures and delays) is the sandbox's,
so the LOKE client is tested against exactly what `loke-sync sandbox` and `loke-sync demo` serve.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests

from devtools.sandbox.payloads import (
    customer_event,
    make_customer,
    make_payment,
    payment_event,
    statistics_event,
    tiny,
)
from devtools.sandbox.server import LokeSandbox
from devtools.sandbox.signing import sign

__all__ = [
    "FakeLoke",
    "customer_event",
    "make_customer",
    "make_payment",
    "payment_event",
    "post_webhook",
    "sign",
    "statistics_event",
    "tiny",
]


class FakeLoke(LokeSandbox):
    """LOKE's OIDC token endpoint and API; state is set and read by tests while it runs."""


def post_webhook(
    url: str, body: Mapping[str, Any] | bytes, secret: str | None, timeout: float = 10
) -> tuple[int, dict[str, Any]]:
    """Deliver like LOKE (compact JSON, signed; `secret=None` sends no signature)."""
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Event-Signature"] = sign(raw, secret)
    response = requests.post(url, data=raw, headers=headers, timeout=timeout)
    try:
        answer = response.json()
    except ValueError:
        return response.status_code, {"_text": response.text}
    return response.status_code, answer if isinstance(answer, dict) else {"_json": answer}
