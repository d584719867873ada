"""The CRM objects the fake knows (contacts, orders, line items), by name and by type id."""

from __future__ import annotations

OBJECT_TYPE_IDS: dict[str, str] = {"contacts": "0-1", "orders": "0-123", "line_items": "0-8"}
# What HubSpot calls one record of each in its messages ("Could not get some CONTACT objects").
SINGULAR: dict[str, str] = {"contacts": "CONTACT", "orders": "ORDER", "line_items": "LINE_ITEM"}

_ALIASES: dict[str, str] = {
    **{name: name for name in OBJECT_TYPE_IDS},
    **{type_id: name for name, type_id in OBJECT_TYPE_IDS.items()},
    "contact": "contacts",
    "order": "orders",
    "line_item": "line_items",
}


def object_name(segment: str) -> str | None:
    """The canonical name (`contacts`) of a path segment (`contacts`, `0-1`, `contact`)."""
    return _ALIASES.get(segment.lower())


def object_of_type_id(type_id: str) -> str | None:
    """The object a list's `objectTypeId` names (`0-1` -> `contacts`), or None."""
    for name, known in OBJECT_TYPE_IDS.items():
        if known == type_id:
            return name
    return None
