"""The sandbox's API routes and LOKE's paging (`X-Next-Page` with an opaque `after` cursor).

Called with the sandbox's lock held, so each answer is one consistent view of its state.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from devtools.httpserver import Request, Response, json_response
from devtools.sandbox.payloads import TINY_FIELDS, parse_ts
from devtools.sandbox.state import LokeState


def error(status: int, message: str, code: str) -> Response:
    """LOKE's error body: `{message, code}`."""
    return json_response(status, {"message": message, "code": code})


def not_found() -> Response:
    return error(404, "Not found", "not_found")


def route(sandbox: LokeState, request: Request, parts: list[str]) -> Response:
    """Answer one authenticated API request; `parts` is the path split on `/`."""
    if parts == ["organizations"] and request.method == "GET":
        orgs = [{"id": o, "name": n} for o, n in sandbox._orgs.items()]
        return page(sandbox, request, orgs)
    if len(parts) < 3 or parts[0] != "organizations" or parts[1] not in sandbox._orgs:
        return not_found()
    org = parts[1]
    customers = sandbox._customers.get(org, {})
    lists = sandbox._lists.get(org, {})
    match request.method, parts[2:]:
        case "GET", ["customers"]:
            return _customers(sandbox, request, list(customers.values()))
        case "GET", ["customers", customer_id] if customer_id in customers:
            return json_response(200, customers[customer_id])
        case "GET", ["webhooks"]:
            subs = [_public(s) for (o, _), s in sandbox.subscriptions.items() if o == org]
            return page(sandbox, request, subs)
        case "PUT", ["webhooks", ref]:
            return _put_webhook(sandbox, request, org, ref)
        case "DELETE", ["webhooks", ref] if (org, ref) in sandbox.subscriptions:
            del sandbox.subscriptions[(org, ref)]
            return Response(204)
        case "GET", ["customer-lists"]:
            return page(sandbox, request, [_list_view(i, cl) for i, cl in lists.items()])
        case "GET", ["customer-lists", list_id] if list_id in lists:
            return json_response(200, _list_view(list_id, lists[list_id]))
        case "GET", ["customer-lists", list_id, "members"] if list_id in lists:
            members = [
                {**{k: customers.get(m, {}).get(k) for k in TINY_FIELDS}, "id": m, "addedAt": at}
                for m, at in lists[list_id]["members"].items()
            ]
            return page(sandbox, request, members)
        case "GET", ["payments"]:
            return _payments(sandbox, request, list(sandbox._payments.get(org, {}).values()))
    return not_found()


def page(sandbox: LokeState, request: Request, items: list[dict[str, Any]]) -> Response:
    """One page of `items` from the `after` cursor, with `X-Next-Page` when more remain."""
    offset = 0
    if (after := request.param("after")) is not None:
        try:
            offset = int(base64.urlsafe_b64decode(after.encode()).decode())
        except ValueError:
            return error(400, "Invalid cursor", "bad_request")
    end = offset + sandbox.page_size
    headers: dict[str, str] = {}
    if end < len(items):
        query = {k: v for k, v in request.query.items() if k != "after"}
        query["after"] = [base64.urlsafe_b64encode(str(end).encode()).decode()]
        target = f"{request.path}?{urlencode(query, doseq=True)}"
        headers["X-Next-Page"] = target if sandbox.relative_next_page else sandbox.url + target
    return json_response(200, items[offset:end], headers)


def _customers(sandbox: LokeState, request: Request, customers: list[dict[str, Any]]) -> Response:
    sort = request.param("sort") or "created"
    if sort not in ("created", "updated"):
        return error(400, f"Invalid sort {sort!r}", "bad_request")
    for field in ("email", "phoneNumber"):
        if (wanted := request.param(field)) is not None:
            customers = [c for c in customers if c.get(field) == wanted]
    customers.sort(key=lambda c: _by(c, f"{sort}At"), reverse=sort == "updated")
    return page(sandbox, request, customers)


def _payments(sandbox: LokeState, request: Request, payments: list[dict[str, Any]]) -> Response:
    sort = request.param("sort") or "created"
    if sort not in ("created", "updated"):
        return error(400, f"Invalid sort {sort!r}", "bad_request")
    if (location := request.param("locationId")) is not None:
        payments = [p for p in payments if p.get("locationId") == location]
    if sort == "created":
        payments.sort(key=lambda p: _by(p, "createdAt"))
    else:  # newest change first: a refund is a payment's last change
        payments.sort(key=_last_change, reverse=True)
    return page(sandbox, request, payments)


def _put_webhook(sandbox: LokeState, request: Request, org: str, ref: str) -> Response:
    try:
        body = request.json()
    except ValueError:
        body = None
    ok = isinstance(body, dict) and isinstance(body.get("url"), str)
    ok = ok and isinstance(body.get("events"), list) and body.get("secret")
    if not ok or not all(isinstance(e, str) for e in body["events"]):
        return error(400, "Expected {url, events: [...], secret}", "bad_request")
    existing = sandbox.subscriptions.get((org, ref))
    sub_id = existing["id"] if existing else str(uuid.uuid4())
    sub = {"id": sub_id, "ref": ref, "url": body["url"], "events": body["events"]}
    sandbox.subscriptions[(org, ref)] = {**sub, "secret": body["secret"]}
    return json_response(200, sub)


def _by(item: dict[str, Any], field: str) -> tuple[datetime, str]:
    """Sort key: the timestamp, then the id so equal times page stably."""
    return parse_ts(item.get(field)), str(item["id"])


def _last_change(payment: dict[str, Any]) -> tuple[datetime, str]:
    times = (payment.get(f) for f in ("refundedAt", "completedAt", "createdAt"))
    return max(parse_ts(t) for t in times), str(payment["id"])


def _public(sub: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sub.items() if k != "secret"}


def _list_view(list_id: str, stored: dict[str, Any]) -> dict[str, Any]:
    count, created = len(stored["members"]), stored["createdAt"]
    return {"id": list_id, "name": stored["name"], "memberCount": count, "createdAt": created}
