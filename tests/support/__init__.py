"""Real-HTTP fakes of LOKE and of the CRM.

The service is tested over real sockets (its HTTP clients, timeouts and retries are part of what is
under test), so the fakes are stdlib servers on an ephemeral 127.0.0.1 port, not mocks. The
plumbing they share is the product's own (`app.sandbox.httpserver`, which also serves the LOKE
sandbox and the demo CRM); the fakes themselves live in `fake_loke` and `fake_crm`.
"""

from __future__ import annotations

from app.sandbox.httpserver import LocalServer, Request, Response, json_response
from app.sandbox.payloads import OLDEST, iso, isoify, parse_ts

FakeServer = LocalServer  # the name every test and bench knows

__all__ = [
    "OLDEST",
    "FakeServer",
    "Request",
    "Response",
    "iso",
    "isoify",
    "json_response",
    "parse_ts",
]
