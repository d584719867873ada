"""The fake HubSpot's server: auth, limits and injected failures around the routes, the
controls a test or the demo turns, and what it holds (thread-safe, also as `GET /_fake/state`).

One lock guards all state; the latency sleep happens outside it, so concurrent requests overlap
as they do against a real server. A request changes state when it arrives and is answered after
its latency.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from http import HTTPStatus
from typing import Any

from devtools.httpserver import LocalServer, Request, Response, json_response
from devtools.hubspot.account import Account
from devtools.hubspot.limits import Limiter, rate_limited
from devtools.hubspot.objects import object_name
from devtools.hubspot.routes import match
from devtools.hubspot.traffic import RequestCounts
from devtools.hubspot.wire import HubSpotError
from devtools.hubspot.wire import now_iso as _now_iso

FIRST_PORTAL_ID = 90_000_001
UNAUTHORIZED = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you"
    " can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
MISSING_SCOPES = (
    "This app hasn't been granted all required scopes to make this call. Read more about"
    " required scopes here: https://developers.hubspot.com/scopes."
)
LOCKED = "The resource is locked by another request; retry in a few seconds."
GATEWAY_PAGE = "<html><head><title>{0}</title></head><body><h1>{0}</h1><hr>cloudflare</body></html>"


class FakeHubSpot(LocalServer):
    """HubSpot's CRM API as the sync uses it, over real HTTP on 127.0.0.1."""

    def __init__(
        self,
        tokens: dict[str, str] | None = None,
        per_ten_seconds: int = 190,
        daily: int | None = None,
        latency: tuple[float, float] = (0.0, 0.0),
        port: int = 0,
        window_seconds: float = 10.0,
    ) -> None:
        super().__init__(port)
        self._lock = threading.RLock()
        self._tokens = dict(tokens or {"test-token": "portal-1"})  # token -> account
        ids = itertools.count(1001)  # record and list ids: increasing, unique across accounts
        names = list(dict.fromkeys(self._tokens.values()))
        self._accounts = {
            name: Account(name, FIRST_PORTAL_ID + i, lambda: str(next(ids)))
            for i, name in enumerate(names)
        }
        self.default_account = names[0]
        self._revoked: set[str] = set()
        self._restricted: set[str] = set()
        self._limiter = Limiter(per_ten_seconds, daily, window_seconds)
        self._latency = latency
        self._rng = random.Random()  # latency jitter, not a secret
        self._lock_next = self._fail_next = self._empty_next = 0
        self._fail_status = 502
        self._counts = RequestCounts()

    # -- controls ------------------------------------------------------------------------------
    def seed_contact(self, properties: dict[str, str], account: str | None = None) -> str:
        """Add a contact as the portal's users would (no checks); its id."""
        return self.seed("contacts", properties, account)

    def seed(self, obj: str, properties: dict[str, str], account: str | None = None) -> str:
        """Add a record of `obj` (`contacts`, `orders`, `line_items`) without checks; its id."""
        with self._lock:
            return self._account(account).records.create(_object(obj), properties).id

    def merge(self, primary_id: str, secondary_id: str, account: str | None = None) -> str:
        """Merge two contacts as a HubSpot user would; the new record's id."""
        with self._lock:
            return self._account(account).merge(primary_id, secondary_id)

    def add_rule(self, obj: str, name: str, pattern: str, account: str | None = None) -> None:
        """A portal validation rule: values of the property must match `pattern`."""
        with self._lock:
            self._account(account).schema.require(_object(obj), name).rule = pattern

    def revoke(self, token: str) -> None:
        """Answer 401 to this token from now on."""
        with self._lock:
            self._revoked.add(token)

    def restore(self, token: str) -> None:
        """Undo `revoke` and `restrict` for this token."""
        with self._lock:
            self._revoked.discard(token)
            self._restricted.discard(token)

    def restrict(self, token: str) -> None:
        """Answer 403 MISSING_SCOPES to this token from now on (it still authenticates)."""
        with self._lock:
            self._restricted.add(token)

    def set_limits(self, per_ten_seconds: int, daily: int | None = None) -> None:
        """Requests allowed per token per 10 s, and per account per day (None: unlimited)."""
        with self._lock:
            self._limiter.set_limits(per_ten_seconds, daily)

    def reset_daily(self) -> None:
        """A new day for the daily limit."""
        with self._lock:
            self._limiter.reset_daily()

    def storm(self, seconds: float) -> None:
        """Answer every request 429 TEN_SECONDLY_ROLLING for the next `seconds`."""
        with self._lock:
            self._limiter.storm(time.monotonic() + seconds)

    def lock_next(self, n: int) -> None:
        """Answer the next `n` batch object writes 423 LOCKED (applying nothing)."""
        with self._lock:
            self._lock_next += n

    def fail_next(self, n: int, status: int = 502) -> None:
        """Answer the next `n` requests `status` with an HTML page, as a gateway does."""
        with self._lock:
            self._fail_next, self._fail_status = self._fail_next + n, status

    def empty_next(self, n: int) -> None:
        """Answer the next `n` batch object writes 200 with empty results and errors (applying
        nothing), as HubSpot does for some malformed bodies."""
        with self._lock:
            self._empty_next += n

    def set_latency(self, low: float, high: float) -> None:
        """Take a time drawn uniformly from [low, high] seconds to answer each request."""
        with self._lock:
            self._latency = (low, high)

    # -- what it holds -------------------------------------------------------------------------
    def portal_id(self, account: str | None = None) -> int:
        """The numeric portal id of an account."""
        with self._lock:
            return self._account(account).portal_id

    def contacts(self, account: str | None = None) -> list[dict[str, Any]]:
        """Every contact: `{"id", "properties"}`, oldest first."""
        return self._records("contacts", account)

    def orders(self, account: str | None = None) -> list[dict[str, Any]]:
        """Every order: `{"id", "properties"}`, oldest first."""
        return self._records("orders", account)

    def line_items(self, account: str | None = None) -> list[dict[str, Any]]:
        """Every line item: `{"id", "properties"}`, oldest first."""
        return self._records("line_items", account)

    def contact_by(
        self, name: str, value: str, account: str | None = None
    ) -> dict[str, Any] | None:
        """The contact whose property `name` is `value` (emails case-insensitively), or None."""
        for contact in self.contacts(account):
            held = contact["properties"].get(name)
            if held == value or (name == "email" and (held or "").lower() == value.lower()):
                return contact
        return None

    def associations(
        self, from_obj: str, to_obj: str, account: str | None = None
    ) -> set[tuple[str, str]]:
        """Every (from id, to id) associated between two objects (names or type ids)."""
        with self._lock:
            return self._account(account).links.pairs(_object(from_obj), _object(to_obj))

    def lists(self, account: str | None = None) -> dict[str, str]:
        """{list name: list id}."""
        with self._lock:
            return self._account(account).lists.names()

    def members(self, list_id: str, account: str | None = None) -> set[str]:
        """The record ids in a list (of any account when `account` is None)."""
        with self._lock:
            held = [self._account(account)] if account else list(self._accounts.values())
            for one in held:
                found = one.lists.members(list_id)
                if found is not None:
                    return found
            raise KeyError(f"no list {list_id}")

    @property
    def requests(self) -> RequestCounts:
        """Requests so far, by (method, route), by status, 429s by policy, 423s and 401s."""
        with self._lock:
            return self._counts.copy()

    @property
    def max_in_window(self) -> int:
        """The most requests one token sent within one 10-second window (429s included)."""
        with self._lock:
            return self._limiter.max_in_window

    def state(self) -> dict[str, Any]:
        """A JSON summary for a demo page (`GET /_fake/state`)."""
        with self._lock:
            accounts = {
                name: {
                    "portalId": held.portal_id,
                    "records": {obj: len(held.records.all(obj)) for obj in _OBJECTS},
                    "lists": {
                        n: len(held.lists.members(i) or ()) for n, i in held.lists.names().items()
                    },
                    "recentContacts": [r.result() for r in held.records.all("contacts")[-20:]],
                    "dailyUsed": self._limiter.daily_used(name),
                }
                for name, held in self._accounts.items()
            }
            return {
                "at": _now_iso(),
                "accounts": accounts,
                "requests": self._counts.as_json(),
                "maxInWindow": self._limiter.max_in_window,
            }

    # -- serving -------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """Answer one API request after the configured latency (slept outside the lock)."""
        if request.path.rstrip("/") == "/_fake/state":
            return json_response(200, self.state())
        started = time.monotonic()
        with self._lock:
            response = self._answer(request, started)
            delay = self._rng.uniform(*self._latency) if self._latency[1] > 0 else 0.0
        remaining = delay - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)
        return response

    def _answer(self, request: Request, now: float) -> Response:
        """Gateway failure, auth, limits, scopes, injected answers, then the route."""
        route = match(request.method, request.path)
        auth = request.header("authorization") or ""
        token = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None
        account = self._tokens.get(token) if token and token not in self._revoked else None
        policy = None
        if self._fail_next:
            self._fail_next -= 1
            title = f"{self._fail_status} {HTTPStatus(self._fail_status).phrase}"
            page = GATEWAY_PAGE.format(title).encode()
            response = Response(self._fail_status, page, {"Content-Type": "text/html"})
        elif token is None or account is None:
            response = HubSpotError(401, "INVALID_AUTHENTICATION", UNAUTHORIZED).response()
        elif (policy := self._limiter.admit(token, account, now)) is not None:
            response = json_response(429, rate_limited(policy))
        elif token in self._restricted:
            response = HubSpotError(403, "MISSING_SCOPES", MISSING_SCOPES).response()
        elif route.run is None:
            status = 404 if route.label == "unknown" else 405
            response = HubSpotError(
                status, "NOT_FOUND", f"No route for {request.method} {request.path}"
            ).response()
        elif route.object_write and self._lock_next:
            self._lock_next -= 1
            response = HubSpotError(423, "LOCKED", LOCKED).response()
        elif route.object_write and self._empty_next:
            self._empty_next -= 1
            response = json_response(200, {"status": "COMPLETE", "results": [], "errors": []})
        else:
            try:
                response = route.run(self._accounts[account], request)
            except HubSpotError as error:
                response = error.response()
        response.headers.update(self._limiter.headers(token, account, now))
        self._counts.record(request.method, route.label, response.status, policy)
        return response

    def _account(self, account: str | None) -> Account:
        return self._accounts[account or self.default_account]

    def _records(self, obj: str, account: str | None) -> list[dict[str, Any]]:
        with self._lock:
            held = self._account(account).records.all(obj)
            return [{"id": r.id, "properties": dict(r.properties)} for r in held]


_OBJECTS = ("contacts", "orders", "line_items")


def _object(name: str) -> str:
    found = object_name(name)
    if found is None:
        raise KeyError(f"unknown object {name!r}")
    return found
