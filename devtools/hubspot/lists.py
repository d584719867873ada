"""Lists (ILS, `/crm/v3/lists` and `/crm/lists/{v}`): names unique case-insensitively,
memberships of current record ids only (a merged-away id is missing), pages of members."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devtools.hubspot.objects import object_of_type_id
from devtools.hubspot.records import RecordStore
from devtools.hubspot.wire import HubSpotError, now_iso, validation

PROCESSING_TYPES = ("MANUAL", "SNAPSHOT", "DYNAMIC")
MAX_PAGE = 250


@dataclass
class HubList:
    """One list and its members (record id -> membership timestamp)."""

    list_id: str
    name: str
    object_type_id: str
    processing_type: str
    created_at: str
    updated_at: str
    members: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The list as the lists API answers it."""
        return {
            "listId": self.list_id,
            "name": self.name,
            "objectTypeId": self.object_type_id,
            "processingType": self.processing_type,
            "size": len(self.members),
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


class ListStore:
    """The lists of one account."""

    def __init__(self, next_id: Callable[[], str], records: RecordStore) -> None:
        self._next_id = next_id
        self._records = records
        self._lists: dict[str, HubList] = {}

    def create(self, body: Any) -> dict[str, Any]:
        """A new list from a POST body: `{"list": ...}`; 400 when the name is taken."""
        if not isinstance(body, dict):
            raise validation("Invalid input JSON: a list is an object")
        name, type_id, kind = body.get("name"), body.get("objectTypeId"), body.get("processingType")
        if not isinstance(name, str) or not name.strip():
            raise validation("Invalid input: a list needs a `name`")
        if not isinstance(type_id, str) or object_of_type_id(type_id) is None:
            raise validation(f"Invalid input: unknown objectTypeId {type_id!r}")
        if kind not in PROCESSING_TYPES:
            raise validation(f"Invalid input: processingType must be one of {PROCESSING_TYPES}")
        self._check_free(name, None)
        now = now_iso()
        made = HubList(self._next_id(), name, type_id, kind, now, now)
        self._lists[made.list_id] = made
        return {"list": made.as_json()}

    def by_name(self, type_id: str, name: str) -> dict[str, Any]:
        """`{"list": ...}` for the list of that object called `name`, or a 404."""
        for held in self._lists.values():
            if held.object_type_id == type_id and held.name.lower() == name.lower():
                return {"list": held.as_json()}
        raise _missing(f"name {name!r}")

    def get(self, list_id: str) -> dict[str, Any]:
        """`{"list": ...}`, or a 404."""
        return {"list": self._find(list_id).as_json()}

    def rename(self, list_id: str, name: str | None) -> dict[str, Any]:
        """`{"updatedList": ...}` after renaming; 400 when another list has the name."""
        held = self._find(list_id)
        if not name or not name.strip():
            raise validation("Invalid input: `listName` is required")
        self._check_free(name, list_id)
        held.name, held.updated_at = name, now_iso()
        return {"updatedList": held.as_json()}

    def delete(self, list_id: str) -> None:
        """Delete a list, or a 404."""
        del self._lists[self._find(list_id).list_id]

    def change(self, list_id: str, add: Any, remove: Any) -> dict[str, list[str]]:
        """Add then remove members: ids added, removed, and missing (not a current record of
        the list's object); existing members and non-members are no-ops."""
        held = self._find(list_id)
        if held.processing_type == "DYNAMIC":
            raise validation("Memberships of a DYNAMIC list cannot be changed by hand")
        obj = object_of_type_id(held.object_type_id) or "contacts"
        added, removed, missing = [], [], []
        now = now_iso()
        for record_id in _ids(add):
            if self._records.get(obj, record_id) is None:
                missing.append(record_id)
            elif record_id not in held.members:
                held.members[record_id] = now
                added.append(record_id)
        for record_id in _ids(remove):
            if self._records.get(obj, record_id) is None:
                missing.append(record_id)
            elif held.members.pop(record_id, None) is not None:
                removed.append(record_id)
        if added or removed:
            held.updated_at = now
        missing = list(dict.fromkeys(missing))
        return {"recordIdsAdded": added, "recordIdsRemoved": removed, "recordIdsMissing": missing}

    def page(self, list_id: str, limit: str | None, after: str | None) -> dict[str, Any]:
        """One page of members by ascending record id, `paging.next.after` when more follow."""
        held = self._find(list_id)
        try:
            size = int(limit) if limit else 100
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_PAGE:
            raise validation(f"limit must be between 1 and {MAX_PAGE}")
        start = int(after) if after and after.isdigit() else -1
        ids = sorted(int(i) for i in held.members if int(i) > start)
        results = [
            {"recordId": str(i), "membershipTimestamp": held.members[str(i)]} for i in ids[:size]
        ]
        answer: dict[str, Any] = {"results": results}
        if len(ids) > size:
            answer["paging"] = {"next": {"after": results[-1]["recordId"]}}
        return answer

    def move(self, old_id: str, new_id: str) -> None:
        """Give record `new_id` the memberships of `old_id` (a merge)."""
        for held in self._lists.values():
            since = held.members.pop(old_id, None)
            if since is not None:
                held.members[new_id] = min(since, held.members.get(new_id, since))

    def names(self) -> dict[str, str]:
        """{name: list id} of every list."""
        return {held.name: held.list_id for held in self._lists.values()}

    def members(self, list_id: str) -> set[str] | None:
        """The record ids in a list, or None when there is no such list."""
        held = self._lists.get(list_id)
        return None if held is None else set(held.members)

    def _find(self, list_id: str) -> HubList:
        held = self._lists.get(list_id)
        if held is None:
            raise _missing(f"id {list_id}")
        return held

    def _check_free(self, name: str, own_id: str | None) -> None:
        for held in self._lists.values():
            if held.name.lower() == name.lower() and held.list_id != own_id:
                raise validation(
                    f"A list named {name!r} already exists", sub_category="ILS.DUPLICATE_LIST_NAMES"
                )


def _missing(what: str) -> HubSpotError:
    return HubSpotError(404, "OBJECT_NOT_FOUND", f"List with {what} does not exist")


def _ids(raw: Any) -> list[str]:
    """Record ids from a body: strings or integers."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(
        isinstance(i, str | int) and not isinstance(i, bool) for i in raw
    ):
        raise validation("Invalid input JSON: record ids must be a list of strings or integers")
    return [str(i) for i in raw]
