"""Associations between records (v4 `batch/associate/default`, `batch/read`, `batch/archive`):
stored both ways, idempotent, with HubSpot's default type ids."""

from __future__ import annotations

from typing import Any

from devtools.httpserver import Response, json_response
from devtools.hubspot.objects import OBJECT_TYPE_IDS
from devtools.hubspot.records import RecordStore
from devtools.hubspot.wire import batch_inputs, now_iso, validation

MAX_INPUTS = 1000
# (from, to) -> HubSpot's default (HUBSPOT_DEFINED) association type id
TYPE_IDS: dict[tuple[str, str], int] = {
    ("orders", "contacts"): 507,
    ("contacts", "orders"): 508,
    ("orders", "line_items"): 513,
    ("line_items", "orders"): 514,
}


class AssociationStore:
    """Which records are associated, kept in both directions."""

    def __init__(self) -> None:
        self._links: dict[tuple[str, str], dict[str, set[str]]] = {}

    def link(self, from_obj: str, from_id: str, to_obj: str, to_id: str) -> None:
        """Associate two records (both directions); a no-op when they already are."""
        self._links.setdefault((from_obj, to_obj), {}).setdefault(from_id, set()).add(to_id)
        self._links.setdefault((to_obj, from_obj), {}).setdefault(to_id, set()).add(from_id)

    def unlink(self, from_obj: str, from_id: str, to_obj: str, to_id: str) -> None:
        """Remove an association (both directions), if there is one."""
        self._links.get((from_obj, to_obj), {}).get(from_id, set()).discard(to_id)
        self._links.get((to_obj, from_obj), {}).get(to_id, set()).discard(from_id)

    def targets(self, from_obj: str, from_id: str, to_obj: str) -> set[str]:
        """The ids of `to_obj` records associated with one record (a copy)."""
        return set(self._links.get((from_obj, to_obj), {}).get(from_id, set()))

    def pairs(self, from_obj: str, to_obj: str) -> set[tuple[str, str]]:
        """Every (from_id, to_id) associated between two objects."""
        links = self._links.get((from_obj, to_obj), {})
        return {(from_id, to_id) for from_id, to_ids in links.items() for to_id in to_ids}

    def move(self, obj: str, old_id: str, new_id: str) -> None:
        """Give record `new_id` the associations of `old_id` (a merge)."""
        for (from_obj, to_obj), links in list(self._links.items()):
            if from_obj == obj and old_id in links:
                for to_id in list(links[old_id]):
                    self.unlink(obj, old_id, to_obj, to_id)
                    self.link(obj, new_id, to_obj, to_id)


def _type_id(from_obj: str, to_obj: str) -> int:
    type_id = TYPE_IDS.get((from_obj, to_obj))
    if type_id is None:
        raise validation(f"No default association from {from_obj} to {to_obj}")
    return type_id


def associate(
    records: RecordStore, links: AssociationStore, from_obj: str, to_obj: str, body: Any
) -> Response:
    """`batch/associate/default`: 200 with one result per pair; 207 naming unknown ids."""
    type_id = _type_id(from_obj, to_obj)
    started = now_iso()
    results: list[dict[str, Any]] = []
    missing: list[str] = []
    for item in batch_inputs(body, MAX_INPUTS):
        from_id, to_id = _id(item.get("from")), _id(item.get("to"))
        source, target = records.resolve(from_obj, from_id), records.resolve(to_obj, to_id)
        missing += [from_id] * (source is None) + [to_id] * (target is None)
        if source is None or target is None:
            continue
        links.link(from_obj, source.id, to_obj, target.id)
        spec = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}
        results.append({
            "fromObjectTypeId": OBJECT_TYPE_IDS[from_obj],
            "fromObjectId": int(source.id),
            "toObjectTypeId": OBJECT_TYPE_IDS[to_obj],
            "toObjectId": int(target.id),
            "associationSpec": [spec],
        })  # fmt: skip
    payload: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started}
    payload["completedAt"] = now_iso()
    if not missing:
        return json_response(200, payload)
    error = {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": f"Could not find some {from_obj} or {to_obj} records to associate",
        "context": {"ids": list(dict.fromkeys(missing))},
    }
    return json_response(207, {**payload, "errors": [error], "numErrors": 1})


def read(
    records: RecordStore, links: AssociationStore, from_obj: str, to_obj: str, body: Any
) -> Response:
    """`batch/read`: for each id with associations, its targets and their type."""
    type_id = _type_id(from_obj, to_obj)
    kind = {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}
    results = []
    for item in batch_inputs(body, MAX_INPUTS):
        asked = _id(item)
        record = records.resolve(from_obj, asked)
        targets = links.targets(from_obj, record.id, to_obj) if record else set()
        if targets:
            to = [{"toObjectId": int(t), "associationTypes": [kind]} for t in sorted(targets)]
            results.append({"from": {"id": asked}, "to": to})
    return json_response(200, {"status": "COMPLETE", "results": results})


def archive(
    records: RecordStore, links: AssociationStore, from_obj: str, to_obj: str, body: Any
) -> Response:
    """`batch/archive`: remove the named associations; 204."""
    _type_id(from_obj, to_obj)
    for item in batch_inputs(body, MAX_INPUTS):
        source = records.resolve(from_obj, _id(item.get("from")))
        targets = item.get("to")
        if source is None or not isinstance(targets, list):
            continue
        for target in targets:
            found = records.resolve(to_obj, _id(target))
            if found is not None:
                links.unlink(from_obj, source.id, to_obj, found.id)
    return Response(204)


def _id(holder: Any) -> str:
    """The `id` of `{"id": ...}` as a string; a 400 when there is none."""
    value = holder.get("id") if isinstance(holder, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise validation("Invalid input: each input needs an `id`")
    return str(value)
