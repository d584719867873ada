"""Which endpoint a request is for: each route has a label (its path without version or ids,
for the request counts) and the function that answers it for an account.

Version segments are lenient (`v3`, `v4` or a date `YYYY-MM`); objects may be named or given by
type id (`contacts` or `0-1`); lists live at both `/crm/v3/lists` and `/crm/lists/{v}`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from devtools.httpserver import Request, Response, json_response
from devtools.hubspot import associations, batch
from devtools.hubspot.account import Account
from devtools.hubspot.objects import object_name
from devtools.hubspot.wire import json_body, validation

Handler = Callable[[Account, Request], Response]
_VERSION = re.compile(r"v3|v4|\d{4}-\d{2}")


@dataclass(frozen=True)
class Route:
    """An endpoint matched: `run` is None for an unknown path or a method it does not take."""

    label: str
    run: Handler | None = None
    object_write: bool = False  # a batch upsert/update/create: subject to lock_next, empty_next


def match(method: str, path: str) -> Route:
    """The route for a request (`Route("unknown")` when none fits)."""
    parts = [unquote(part) for part in path.split("/") if part]
    for matcher in (_account, _properties, _objects, _associations, _lists):
        found = matcher(method, parts)
        if found is not None:
            return found
    return Route("unknown")


def _ok(payload: Any, status: int = 200) -> Response:
    return json_response(status, payload)


def _account(method: str, parts: list[str]) -> Route | None:
    if len(parts) != 3 or parts[::2] != ["account-info", "details"]:
        return None
    if not _VERSION.fullmatch(parts[1]):
        return None
    run: Handler = lambda account, request: _ok(account.info())  # noqa: E731
    return Route("/account-info/details", run if method == "GET" else None)


def _properties(method: str, parts: list[str]) -> Route | None:
    if len(parts) < 4 or parts[:2] != ["crm", "properties"] or not _VERSION.fullmatch(parts[2]):
        return None
    obj, rest = object_name(parts[3]), parts[4:]
    if obj is None or len(rest) > 2:
        return None
    base = f"/crm/properties/{obj}"
    runs: dict[str, Handler] = {}
    if rest == []:
        label = base
        runs["GET"] = lambda a, r: _ok({"results": [p.as_json() for p in a.schema.properties(obj)]})
        runs["POST"] = lambda a, r: _ok(a.schema.create(obj, json_body(r)).as_json(), 201)
    elif rest == ["groups"]:
        label = f"{base}/groups"
        runs["GET"] = lambda a, r: _ok({"results": a.schema.groups(obj)})
        runs["POST"] = lambda a, r: _ok(a.schema.create_group(obj, json_body(r)), 201)
    elif rest[0] == "groups":
        label = f"{base}/groups/{{groupName}}"
        runs["GET"] = lambda a, r: _ok(a.schema.group(obj, rest[1]))
    elif len(rest) == 1:
        label = f"{base}/{{propertyName}}"
        runs["GET"] = lambda a, r: _ok(a.schema.require(obj, rest[0]).as_json())
        runs["PATCH"] = lambda a, r: _ok(a.schema.patch(obj, rest[0], json_body(r)).as_json())
    else:
        return None
    return Route(label, runs.get(method))


def _objects(method: str, parts: list[str]) -> Route | None:
    if len(parts) != 6 or parts[:2] != ["crm", "objects"] or not _VERSION.fullmatch(parts[2]):
        return None
    obj, kind = object_name(parts[3]), parts[5]
    if obj is None or parts[4] != "batch" or kind not in (*batch.WRITES, "read"):
        return None
    run: Handler
    if kind == "read":
        run = lambda a, r: batch.read(a, obj, json_body(r))  # noqa: E731
    else:
        run = lambda a, r: batch.write(a, obj, kind, json_body(r))  # noqa: E731
    label = f"/crm/objects/{obj}/batch/{kind}"
    return Route(label, run if method == "POST" else None, object_write=kind != "read")


def _associations(method: str, parts: list[str]) -> Route | None:
    if len(parts) < 7 or parts[:2] != ["crm", "associations"] or parts[5] != "batch":
        return None
    from_obj, to_obj, action = object_name(parts[3]), object_name(parts[4]), parts[6:]
    if not _VERSION.fullmatch(parts[2]) or from_obj is None or to_obj is None:
        return None
    label = f"/crm/associations/{from_obj}/{to_obj}/batch/{'/'.join(action)}"
    answer = {
        "associate": associations.associate,
        "read": associations.read,
        "archive": associations.archive,
    }.get(action[0])
    if answer is None or action not in (["associate", "default"], ["read"], ["archive"]):
        return None
    allowed = ("POST", "PUT") if action[0] == "associate" else ("POST",)
    run: Handler = lambda a, r: answer(a.records, a.links, from_obj, to_obj, json_body(r))  # noqa: E731
    return Route(label, run if method in allowed else None)


def _lists(method: str, parts: list[str]) -> Route | None:
    if len(parts) < 3 or parts[0] != "crm":
        return None
    versioned = {(parts[1], parts[2]), (parts[2], parts[1])}  # /crm/v3/lists, /crm/lists/{v}
    if not any(p == "lists" and _VERSION.fullmatch(v) for p, v in versioned):
        return None
    rest = parts[3:]
    runs: dict[str, Handler] = {}
    if rest == []:
        label = "/crm/lists"
        runs["POST"] = lambda a, r: _ok(a.lists.create(json_body(r)))
    elif len(rest) == 4 and rest[0] == "object-type-id" and rest[2] == "name":
        label = "/crm/lists/object-type-id/{objectTypeId}/name/{listName}"
        runs["GET"] = lambda a, r: _ok(a.lists.by_name(rest[1], rest[3]))
    elif len(rest) == 1:
        label = "/crm/lists/{listId}"
        runs["GET"] = lambda a, r: _ok(a.lists.get(rest[0]))
        runs["DELETE"] = lambda a, r: _deleted(a, rest[0])
    elif rest[1:] == ["update-list-name"]:
        label = "/crm/lists/{listId}/update-list-name"
        runs["PUT"] = lambda a, r: _ok(a.lists.rename(rest[0], r.param("listName")))
    elif rest[1:] == ["memberships"]:
        label = "/crm/lists/{listId}/memberships"
        runs["GET"] = lambda a, r: _ok(a.lists.page(rest[0], r.param("limit"), r.param("after")))
    elif len(rest) == 3 and rest[1] == "memberships" and rest[2] in _MEMBERSHIPS:
        label = f"/crm/lists/{{listId}}/memberships/{rest[2]}"
        runs["PUT"] = lambda a, r: _ok(_MEMBERSHIPS[rest[2]](a, rest[0], json_body(r)))
    else:
        return None
    return Route(label, runs.get(method))


def _deleted(account: Account, list_id: str) -> Response:
    account.lists.delete(list_id)
    return Response(204)


def _add(account: Account, list_id: str, body: Any) -> dict[str, Any]:
    changed = account.lists.change(list_id, _array(body), None)
    # (sic) HubSpot's field for /add is `recordsIdsAdded`
    return {
        "recordsIdsAdded": changed["recordIdsAdded"],
        "recordIdsMissing": changed["recordIdsMissing"],
    }


def _remove(account: Account, list_id: str, body: Any) -> dict[str, Any]:
    changed = account.lists.change(list_id, None, _array(body))
    return {
        "recordIdsRemoved": changed["recordIdsRemoved"],
        "recordIdsMissing": changed["recordIdsMissing"],
    }


def _add_and_remove(account: Account, list_id: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise validation("Invalid input JSON: expected {recordIdsToAdd, recordIdsToRemove}")
    return dict(
        account.lists.change(list_id, body.get("recordIdsToAdd"), body.get("recordIdsToRemove"))
    )


def _array(body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise validation("Invalid input JSON: the body must be a JSON array of record ids")
    return body


_MEMBERSHIPS: dict[str, Callable[[Account, str, Any], dict[str, Any]]] = {
    "add": _add,
    "remove": _remove,
    "add-and-remove": _add_and_remove,
}
