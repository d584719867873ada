"""Real-HTTP fakes of LOKE and of the CRM, and the processes and data the tests drive.

The service is tested over real sockets (its HTTP clients, timeouts and retries are part of what is
under test), so the fakes are stdlib servers on an ephemeral 127.0.0.1 port, not mocks: the LOKE
sandbox (`fake_loke`) and the fake CRM (`devtools.crm`), the same ones `loke-sync sandbox` and
`loke-sync demo` serve.
"""

from __future__ import annotations

from devtools.httpserver import LocalServer, Request, Response, json_response
from devtools.sandbox.payloads import OLDEST, iso, isoify, parse_ts

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
