"""A fake of LOKE's auth and API servers in one process, plus webhook and payload helpers.

Point both LOKE_AUTH_URL and LOKE_API_URL at `FakeLoke.url`. It behaves as loke-api.md says LOKE
does (client-credentials tokens, `X-Next-Page` paging, webhook subscriptions) and can fail or stall
on demand, so token refresh, paging and retry code is exercised over real HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_plus, urlencode

import requests

from . import FakeServer, Request, Response, iso, isoify, json_response, parse_ts

_AUTH_PATHS = ("/.well-known/openid-configuration", "/token", "/jwks")
_TINY = ("id", "email", "firstName", "lastName", "phoneNumber")
_POINTS = ("totalPointsEarned", "totalPointsRedeemed")
_AMOUNTS = ("creditAmount", "discountAmount", "externalAmount", "feeAmount", "tipAmount")


def _err(status: int, message: str, code: str) -> Response:
    return json_response(status, {"message": message, "code": code})


def _not_found() -> Response:
    return _err(404, "Not found", "not_found")


class FakeLoke(FakeServer):
    """LOKE's OIDC token endpoint and API; state is set and read by tests while it runs."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        token_ttl: int = 3600,
        page_size: int = 1000,
        relative_next_page: bool = False,
    ) -> None:
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self.token_ttl, self.page_size = token_ttl, page_size
        self.relative_next_page = relative_next_page
        self._lock = threading.RLock()
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._orgs: dict[str, str] = {}
        self._customers: dict[str, dict[str, dict[str, Any]]] = {}
        self._lists: dict[str, dict[str, dict[str, Any]]] = {}
        self._payments: dict[str, dict[str, dict[str, Any]]] = {}
        self._failures: deque[tuple[int, str | None]] = deque()
        self._delays: deque[float] = deque()
        self.subscriptions: dict[tuple[str, str], dict[str, Any]] = {}
        self.token_requests = 0
        self.requests: list[tuple[str, str]] = []  # (method, path with query), every request

    # -- state, set from tests ------------------------------------------------------------
    def add_org(self, org_id: str, name: str | None = None) -> None:
        """Make an organization reachable by the client (the add-on is installed there)."""
        with self._lock:
            self._orgs[org_id] = name or f"Org {org_id}"

    def set_customers(self, org_id: str, customers: Iterable[dict[str, Any]]) -> None:
        """Replace the org's customers (adds the org if unknown)."""
        with self._lock:
            self._orgs.setdefault(org_id, f"Org {org_id}")
            self._customers[org_id] = {c["id"]: dict(c) for c in customers}

    def upsert_customer(self, org_id: str, customer: dict[str, Any]) -> None:
        """Create or replace one customer by id."""
        with self._lock:
            self._orgs.setdefault(org_id, f"Org {org_id}")
            self._customers.setdefault(org_id, {})[customer["id"]] = dict(customer)

    def set_list(self, org_id: str, list_id: str, name: str, member_ids: Iterable[str]) -> None:
        """Create or replace a customer list and its members (membership has no webhooks)."""
        with self._lock:
            self._orgs.setdefault(org_id, f"Org {org_id}")
            old = self._lists.setdefault(org_id, {}).get(list_id, {"members": {}})
            now = iso(datetime.now().astimezone())
            members = {m: old["members"].get(m, now) for m in member_ids}  # keep addedAt
            created = old.get("createdAt", now)
            self._lists[org_id][list_id] = {"name": name, "createdAt": created, "members": members}

    def set_payments(self, org_id: str, payments: Iterable[dict[str, Any]]) -> None:
        """Replace the org's payments."""
        with self._lock:
            self._orgs.setdefault(org_id, f"Org {org_id}")
            self._payments[org_id] = {p["id"]: dict(p) for p in payments}

    def secret_for(self, org_id: str) -> str:
        """Secret of the org's single webhook subscription (what LOKE signs deliveries with)."""
        with self._lock:
            found = [s["secret"] for (org, _), s in self.subscriptions.items() if org == org_id]
        if len(found) != 1:
            raise LookupError(f"org {org_id} has {len(found)} webhook subscriptions, not 1")
        return str(found[0])

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

    def delay_next(self, n: int, seconds: float) -> None:
        """The next `n` API requests sleep `seconds` before answering (client timeouts)."""
        with self._lock:
            self._delays.extend([seconds] * n)

    # -- serving --------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """Log, apply injected delay/failure to API routes, then route."""
        is_api = request.path not in _AUTH_PATHS
        with self._lock:
            self.requests.append((request.method, request.target))
            delay = self._delays.popleft() if is_api and self._delays else 0.0
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
            if self._failures:
                status, retry_after = self._failures.popleft()
                headers = {"Retry-After": retry_after} if retry_after is not None else None
                body = {"message": "Injected failure", "code": "injected"}
                return json_response(status, body, headers)
            auth = request.header("authorization") or ""
            token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
            if self._tokens.get(token, 0.0) <= time.monotonic():
                return _err(401, "Unauthorized", "unauthorized")
            return self._api(request, [unquote(p) for p in request.path.strip("/").split("/")])

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
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl}
        return json_response(200, body)

    def _api(self, request: Request, parts: list[str]) -> Response:
        if parts == ["organizations"] and request.method == "GET":
            return self._page(request, [{"id": o, "name": n} for o, n in self._orgs.items()])
        if len(parts) < 3 or parts[0] != "organizations" or parts[1] not in self._orgs:
            return _not_found()
        org = parts[1]
        customers = self._customers.get(org, {})
        lists = self._lists.get(org, {})
        match request.method, parts[2:]:
            case "GET", ["customers"]:
                return self._list_customers(request, list(customers.values()))
            case "GET", ["customers", customer_id] if customer_id in customers:
                return json_response(200, customers[customer_id])
            case "GET", ["webhooks"]:
                subs = [_public(s) for (o, _), s in self.subscriptions.items() if o == org]
                return self._page(request, subs)
            case "PUT", ["webhooks", ref]:
                return self._put_webhook(request, org, ref)
            case "DELETE", ["webhooks", ref] if (org, ref) in self.subscriptions:
                del self.subscriptions[(org, ref)]
                return Response(204)
            case "GET", ["customer-lists"]:
                return self._page(request, [_list_view(i, cl) for i, cl in lists.items()])
            case "GET", ["customer-lists", list_id] if list_id in lists:
                return json_response(200, _list_view(list_id, lists[list_id]))
            case "GET", ["customer-lists", list_id, "members"] if list_id in lists:
                members = [
                    {**{k: customers.get(m, {}).get(k) for k in _TINY}, "id": m, "addedAt": at}
                    for m, at in lists[list_id]["members"].items()
                ]
                return self._page(request, members)
            case "GET", ["payments"]:  # oldest first, whatever `sort` says: enough for tests
                payments = self._payments.get(org, {}).values()
                return self._page(request, sorted(payments, key=lambda p: _by(p, "createdAt")))
        return _not_found()

    def _list_customers(self, request: Request, customers: list[dict[str, Any]]) -> Response:
        sort = request.param("sort") or "created"
        if sort not in ("created", "updated"):
            return _err(400, f"Invalid sort {sort!r}", "bad_request")
        customers.sort(key=lambda c: _by(c, f"{sort}At"), reverse=sort == "updated")
        return self._page(request, customers)

    def _put_webhook(self, request: Request, org: str, ref: str) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        ok = isinstance(body, dict) and isinstance(body.get("url"), str)
        ok = ok and isinstance(body.get("events"), list) and body.get("secret")
        if not ok or not all(isinstance(e, str) for e in body["events"]):
            return _err(400, "Expected {url, events: [...], secret}", "bad_request")
        existing = self.subscriptions.get((org, ref))
        sub_id = existing["id"] if existing else str(uuid.uuid4())
        sub = {"id": sub_id, "ref": ref, "url": body["url"], "events": body["events"]}
        self.subscriptions[(org, ref)] = {**sub, "secret": body["secret"]}
        return json_response(200, sub)

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        offset = 0
        if (after := request.param("after")) is not None:
            try:
                offset = int(base64.urlsafe_b64decode(after.encode()).decode())
            except ValueError:
                return _err(400, "Invalid cursor", "bad_request")
        end = offset + self.page_size
        headers: dict[str, str] = {}
        if end < len(items):
            query = {k: v for k, v in request.query.items() if k != "after"}
            query["after"] = [base64.urlsafe_b64encode(str(end).encode()).decode()]
            target = f"{request.path}?{urlencode(query, doseq=True)}"
            headers["X-Next-Page"] = target if self.relative_next_page else self.url + target
        return json_response(200, items[offset:end], headers)


def _by(item: dict[str, Any], field: str) -> tuple[datetime, str]:
    """Sort key: the timestamp, then the id so equal times page stably."""
    return parse_ts(item.get(field)), str(item["id"])


def _public(sub: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sub.items() if k != "secret"}


def _list_view(list_id: str, stored: dict[str, Any]) -> dict[str, Any]:
    count, created = len(stored["members"]), stored["createdAt"]
    return {"id": list_id, "name": stored["name"], "memberCount": count, "createdAt": created}


# -- webhooks and payloads -------------------------------------------------------------------
def sign(body: bytes, secret: str) -> str:
    """`X-Event-Signature` value LOKE would send: HMAC-SHA256 of the raw bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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


def make_customer(customer_id: str, updated_at: datetime, **overrides: Any) -> dict[str, Any]:
    """A customer in LOKE's shape; `statistics=` overrides merge, datetimes become ISO strings."""
    digits = int(hashlib.sha256(customer_id.encode()).hexdigest(), 16) % 10**8
    customer: dict[str, Any] = {
        "id": customer_id,
        "email": f"{customer_id.lower()}@example.com",
        "firstName": "Test",
        "lastName": f"Customer {customer_id[-6:]}",
        "phoneNumber": f"+614{digits:08d}",
        "dob": "1990-01-31",
        "gender": "female",
        "hasAgreedToMarketing": True,
        "createdAt": updated_at - timedelta(days=30),
        "updatedAt": updated_at,
    }
    statistics: dict[str, Any] = dict.fromkeys(("pointsBalance", "totalSpend", *_POINTS), 0)
    statistics |= dict.fromkeys(("lastPointsEarnedAt", "lastPointsRedeemedAt", "lastSpentAt"))
    stats_overrides = overrides.pop("statistics", {})
    customer.update(overrides)
    customer["statistics"] = None if stats_overrides is None else statistics | stats_overrides
    return isoify(customer)


def make_payment(
    payment_id: str, customer: Mapping[str, Any] | None, completed_at: datetime, **overrides: Any
) -> dict[str, Any]:
    """A completed payment in LOKE's shape (`customer=None` is a guest payment)."""
    item = {"id": "item-1", "name": "Flat white", "amount": 1250, "quantity": 1, "type": "product"}
    payment: dict[str, Any] = {
        "id": payment_id,
        "billingType": "order/pickup",
        **dict.fromkeys(_AMOUNTS, 0),
        "chargedAmount": 1250,
        "total": 1250,
        "currency": "AUD",
        "createdAt": completed_at,
        "completedAt": completed_at,
        "refundedAt": None,
        "locationId": "loc-1",
        "refId": payment_id[:8],
        "state": "completed",
        "items": [{**item, "options": []}],
    }
    if customer is not None:
        payment["customer"] = tiny(customer)
    payment.update(overrides)
    return isoify(payment)


def tiny(customer: Mapping[str, Any]) -> dict[str, Any]:
    """CustomerTiny: the part of a customer that statistics and payment events carry."""
    return {k: customer.get(k) for k in _TINY}


def customer_event(kind: str, org_id: str, customer: Mapping[str, Any]) -> dict[str, Any]:
    """`customer.created` / `customer.updated` body (`kind` with or without the prefix)."""
    event = kind if "." in kind else f"customer.{kind}"
    return {"event": event, "customer": dict(customer), "organization": _org(org_id)}


def statistics_event(
    org_id: str, customer_tiny: Mapping[str, Any], statistics: Mapping[str, Any]
) -> dict[str, Any]:
    """`customer.updated-statistics` body (a full customer is reduced to CustomerTiny)."""
    customer, org = tiny(customer_tiny), _org(org_id)
    stats = isoify(dict(statistics))
    event = "customer.updated-statistics"
    return {"event": event, "statistics": stats, "customer": customer, "organization": org}


def payment_event(
    kind: str, org_id: str, payment: Mapping[str, Any], location: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`payment.completed` / `payment.refunded` body (`kind` with or without the prefix)."""
    event = kind if "." in kind else f"payment.{kind}"
    body = {"event": event, "payment": dict(payment), "organization": _org(org_id)}
    if location is not None:
        body["location"] = dict(location)
    return body


def _org(org_id: str) -> dict[str, str]:
    """FakeLoke.add_org's default name, so events and the API agree."""
    return {"id": org_id, "name": f"Org {org_id}"}
