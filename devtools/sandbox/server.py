"""The simulated LOKE: auth and API in one local server, its state, and the webhooks it fires.

Point both LOKE_AUTH_URL and LOKE_API_URL at `LokeSandbox.url`. It answers as loke-api.md says
LOKE does (client-credentials tokens, `X-Next-Page` paging, webhook subscriptions), fires signed
webhooks at subscribed URLs (`emit`), and can fail or stall on demand, so token refresh, paging
and retry code meet the same conditions they would in production, over real HTTP.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_plus

from devtools.httpserver import LocalServer, Request, Response, json_response
from devtools.sandbox import api
from devtools.sandbox.firer import DeliveryStyle, RetrySchedule, WebhookFirer
from devtools.sandbox.state import LokeState

AUTH_PATHS = ("/.well-known/openid-configuration", "/token", "/jwks")


class LokeSandbox(LocalServer, LokeState):
    """LOKE's OIDC token endpoint and API; state is read and changed while it serves."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        token_ttl: int = 3600,
        page_size: int = 1000,
        relative_next_page: bool = False,
        *,
        port: int = 0,
        style: DeliveryStyle | None = None,
        retry: RetrySchedule | None = None,
        seed: int = 0,
    ) -> None:
        LocalServer.__init__(self, port)
        LokeState.__init__(self, page_size, relative_next_page)
        self.client_id, self.client_secret = client_id, client_secret
        self.token_ttl = token_ttl
        self.style = style or DeliveryStyle()
        self.firer = WebhookFirer(retry)
        # Jitter only, never a secret (nosec B311); never touches the truth, so how deliveries
        # are timed cannot change what the simulation does.
        self._delivery_rng = random.Random(seed)  # nosec B311
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._failures: deque[tuple[int, str | None]] = deque()
        self._failure_shares: dict[int, float] = {}
        self._failure_rng = random.Random(seed)  # nosec B311: fault injection, not secrets
        self._delays: deque[float] = deque()
        self.token_requests = 0
        self.requests: list[tuple[str, str]] = []  # (method, path with query), every request
        self.latency = 0.0  # seconds every API answer takes (a real LOKE's page takes ~0.1)
        self.lost_webhooks: list[dict[str, Any]] = []  # bodies never delivered (lost_payment_ratio)

    def issued_tokens(self) -> list[str]:
        """Every access token handed out so far (tests check none of them is ever logged)."""
        with self._lock:
            return list(self._tokens)

    def expire_all_tokens(self) -> None:
        """Invalidate every issued token: the next API call with one answers 401."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def fail_next(self, n: int, status: int = 500, retry_after: str | None = None) -> None:
        """The next `n` API requests (not auth) answer `status`."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * n)

    def fail_share(self, shares: dict[int, float]) -> None:
        """From now on each API request answers a status at random with its share
        (`{500: 0.05, 429: 0.05}`; a 429 says Retry-After 1); `{}` stops it."""
        with self._lock:
            self._failure_shares = dict(shares)

    def _chance_failure(self) -> tuple[int, str | None] | None:
        roll = self._failure_rng.random()
        for status, share in self._failure_shares.items():
            if roll < share:
                return status, "1" if status == 429 else None
            roll -= share
        return None

    def delay_next(self, n: int, seconds: float) -> None:
        """The next `n` API requests sleep `seconds` before answering (client timeouts)."""
        with self._lock:
            self._delays.extend([seconds] * n)

    # -- webhooks -------------------------------------------------------------------------
    def emit(self, org_id: str, body: dict[str, Any]) -> int:
        """Deliver one webhook body to every subscription of the org that asked for its event,
        in `style` (late, maybe twice, maybe overtaken). Returns the deliveries queued."""
        raw = json.dumps(body, separators=(",", ":")).encode()
        queued = 0
        with self._lock:
            targets = [
                (sub["url"], sub["secret"])
                for (org, _), sub in self.subscriptions.items()
                if org == org_id and body["event"] in sub["events"]
            ]
            if targets and self.style.lost(body["event"], self._delivery_rng):
                self.lost_webhooks.append(body)
                return 0
            plans = [self.style.plan(self._delivery_rng) for _ in targets]
        for (url, secret), delays in zip(targets, plans, strict=True):
            for delay in delays:
                self.firer.fire(url, raw, secret, body["event"], delay)
                queued += 1
        return queued

    def stop(self) -> None:
        """Stop serving and firing."""
        self.firer.stop()
        super().stop()

    # -- serving --------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """Log, apply injected delay/failure to API routes, then route."""
        is_api = request.path not in AUTH_PATHS
        with self._lock:
            self.requests.append((request.method, request.target))
            delay = self._delays.popleft() if is_api and self._delays else 0.0
            delay = max(delay, self.latency if is_api else 0.0)
        if delay > 0:
            time.sleep(delay)
        with self._lock:
            if request.path == "/.well-known/openid-configuration":
                base = self.url
                config = {"issuer": base, "token_endpoint": f"{base}/token"}
                return json_response(200, {**config, "jwks_uri": f"{base}/jwks"})
            if request.path == "/jwks":
                return json_response(200, {"keys": []})
            if request.path == "/token":
                return self._token(request)
            failure = self._failures.popleft() if self._failures else self._chance_failure()
            if failure is not None:
                status, retry_after = failure
                headers = {"Retry-After": retry_after} if retry_after is not None else None
                body = {"message": "Injected failure", "code": "injected"}
                return json_response(status, body, headers)
            auth = request.header("authorization") or ""
            token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
            if self._tokens.get(token, 0.0) <= time.monotonic():
                return api.error(401, "Unauthorized", "unauthorized")
            return self._api(request, [unquote(p) for p in request.path.strip("/").split("/")])

    def _api(self, request: Request, parts: list[str]) -> Response:
        # A method (not a plain call to api.route) so a bench can wrap it on one instance.
        return api.route(self, request, parts)

    def _token(self, request: Request) -> Response:
        self.token_requests += 1
        if request.method != "POST":
            return json_response(405, {"error": "invalid_request"})
        form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return json_response(400, {"error": "unsupported_grant_type"})
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = request.header("authorization") or ""
        if auth.startswith("Basic "):
            decoded = base64.b64decode(auth[len("Basic ") :]).decode()
            client_id, _, client_secret = (unquote_plus(s) for s in decoded.partition(":"))
        if client_id != self.client_id or client_secret != self.client_secret:
            return json_response(401, {"error": "invalid_client"})
        token = secrets.token_urlsafe(24)
        self._tokens[token] = time.monotonic() + self.token_ttl
        kind = "Bearer"  # a token type, not a password
        body = {"access_token": token, "token_type": kind, "expires_in": self.token_ttl}
        return json_response(200, body)
