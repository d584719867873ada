"""One account's property groups and properties per object: HubSpot's defaults, creation (409
when the name exists), partial updates, and the rules on types and unique properties."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from devtools.hubspot.objects import OBJECT_TYPE_IDS
from devtools.hubspot.wire import HubSpotError, not_found, validation

# type -> the fieldTypes it may be shown as
FIELD_TYPES: dict[str, frozenset[str]] = {
    "string": frozenset({"text", "textarea"}),
    "number": frozenset({"number"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"date"}),
    "bool": frozenset({"booleancheckbox"}),
    "enumeration": frozenset({"select", "radio", "checkbox", "booleancheckbox"}),
}
MAX_UNIQUE = 10  # unique properties per object
_NAME = re.compile(r"[a-z][a-z0-9_]*")

DEFAULT_GROUPS: dict[str, tuple[str, str]] = {
    "contacts": ("contactinformation", "Contact information"),
    "orders": ("orderinformation", "Order information"),
    "line_items": ("line_item_information", "Line item information"),
}
# object -> (name, type, fieldType) of the properties every portal has
DEFAULT_PROPERTIES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "contacts": (
        ("email", "string", "text"),
        ("firstname", "string", "text"),
        ("lastname", "string", "text"),
        ("phone", "string", "phonenumber"),
        ("hs_object_id", "number", "number"),
        ("hs_additional_emails", "string", "textarea"),
        ("hs_merged_object_ids", "string", "text"),
    ),
    "orders": (
        ("hs_order_name", "string", "text"),
        ("hs_total_price", "number", "number"),
        ("hs_currency_code", "string", "text"),
        ("hs_external_created_date", "datetime", "date"),
        ("hs_refund_amount", "number", "number"),
        ("hs_object_id", "number", "number"),
    ),
    "line_items": (
        ("name", "string", "text"),
        ("quantity", "number", "number"),
        ("price", "number", "number"),
        ("hs_object_id", "number", "number"),
    ),
}


@dataclass
class Property:
    """One property of an object, as HubSpot describes it."""

    name: str
    label: str
    type: str
    field_type: str
    group_name: str
    has_unique_value: bool = False
    description: str = ""
    options: list[dict[str, Any]] = field(default_factory=list)
    # A portal's own validation rule (HubSpot lets admins set them): values must match it.
    rule: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The property as the properties API answers it."""
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": self.group_name,
            "hasUniqueValue": self.has_unique_value,
            "description": self.description,
            "options": self.options,
        }


class Schema:
    """The property groups and properties of one account, per object."""

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, dict[str, Any]]] = {}
        self._properties: dict[str, dict[str, Property]] = {}
        for obj in OBJECT_TYPE_IDS:
            group, label = DEFAULT_GROUPS[obj]
            self._groups[obj] = {group: _group(group, label, 0)}
            self._properties[obj] = {
                name: Property(name, name, kind, field_type, group)
                for name, kind, field_type in DEFAULT_PROPERTIES[obj]
            }

    def properties(self, obj: str) -> list[Property]:
        """Every property of `obj`."""
        return list(self._properties[obj].values())

    def get(self, obj: str, name: str) -> Property | None:
        """The property called `name`, or None."""
        return self._properties[obj].get(name)

    def require(self, obj: str, name: str) -> Property:
        """The property called `name`, or a 404."""
        found = self.get(obj, name)
        if found is None:
            raise not_found(f"Property {name} does not exist")
        return found

    def unique_names(self, obj: str) -> list[str]:
        """The names of `obj`'s properties with `hasUniqueValue`."""
        return [p.name for p in self._properties[obj].values() if p.has_unique_value]

    def keys_records(self, obj: str, name: str) -> bool:
        """Whether `name` may be an `idProperty`: a unique property, or a contact's email."""
        found = self.get(obj, name)
        return found is not None and (
            found.has_unique_value or (obj, name) == ("contacts", "email")
        )

    def create(self, obj: str, body: Any) -> Property:
        """Add a property from a POST body: 409 if the name exists, 400 if it is not valid."""
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise validation("Invalid input: a property needs a `name`")
        name = body["name"]
        if name in self._properties[obj]:
            raise HubSpotError(
                409,
                "OBJECT_ALREADY_EXISTS",
                f"Property {name} already exists",
                sub_category="PROPERTY_WITH_NAME_EXISTS",
            )
        if not _NAME.fullmatch(name):
            raise validation(f"Property name {name!r} must be lower-case letters, digits and _")
        if not isinstance(body.get("label"), str) or not body["label"]:
            raise validation("Invalid input: a property needs a `label`")
        unique = body.get("hasUniqueValue", False)
        if not isinstance(unique, bool):
            raise validation("Invalid input: `hasUniqueValue` must be true or false")
        if unique and len(self.unique_names(obj)) >= MAX_UNIQUE:
            raise validation(f"An object may have at most {MAX_UNIQUE} unique properties")
        made = Property(name, body["label"], "", "", "", unique)
        self._update(obj, made, {"type": None, "fieldType": None, "groupName": None, **body})
        self._properties[obj][name] = made
        return made

    def patch(self, obj: str, name: str, body: Any) -> Property:
        """Apply a PATCH: label, groupName, description, type/fieldType, options; 400 when it
        would change `hasUniqueValue` (HubSpot never changes it after creation)."""
        found = self.require(obj, name)
        if not isinstance(body, dict):
            raise validation("Invalid input JSON: a property update is an object")
        unique = body.get("hasUniqueValue", found.has_unique_value)
        if unique != found.has_unique_value:
            raise validation(f"hasUniqueValue of {name} cannot be changed")
        changed = Property(**vars(found))
        self._update(obj, changed, body)
        self._properties[obj][name] = changed
        return changed

    def _update(self, obj: str, target: Property, body: dict[str, Any]) -> None:
        """Check and copy the editable fields of `body` present on it into `target`."""
        if "label" in body:
            if not isinstance(body["label"], str) or not body["label"]:
                raise validation("Invalid input: `label` must be a non-empty string")
            target.label = body["label"]
        if "groupName" in body:
            if body["groupName"] not in self._groups[obj]:
                raise validation(f"Property group {body['groupName']!r} does not exist")
            target.group_name = body["groupName"]
        if "description" in body:
            if not isinstance(body["description"], str):
                raise validation("Invalid input: `description` must be a string")
            target.description = body["description"]
        if "type" in body or "fieldType" in body:
            kind = body.get("type", target.type)
            field_type = body.get("fieldType", target.field_type)
            if kind not in FIELD_TYPES or field_type not in FIELD_TYPES[kind]:
                raise validation(f"Invalid type/fieldType: {kind!r}/{field_type!r}")
            target.type, target.field_type = kind, field_type
        if "options" in body:
            target.options = _options(body["options"])
        elif target.type == "enumeration" and not target.options:
            raise validation("An enumeration property needs `options`")

    def groups(self, obj: str) -> list[dict[str, Any]]:
        """Every property group of `obj`."""
        return list(self._groups[obj].values())

    def group(self, obj: str, name: str) -> dict[str, Any]:
        """The group called `name`, or a 404."""
        found = self._groups[obj].get(name)
        if found is None:
            raise not_found(f"Property group {name} does not exist")
        return found

    def create_group(self, obj: str, body: Any) -> dict[str, Any]:
        """Add a group from a POST body: 409 if the name exists."""
        if not isinstance(body, dict):
            raise validation("Invalid input JSON: a property group is an object")
        name, label = body.get("name"), body.get("label")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise validation("Invalid input: a group needs a lower-case `name`")
        if not isinstance(label, str) or not label:
            raise validation("Invalid input: a group needs a `label`")
        if name in self._groups[obj]:
            raise HubSpotError(409, "OBJECT_ALREADY_EXISTS", f"Property group {name} exists")
        order = body.get("displayOrder", -1)
        if not isinstance(order, int):
            raise validation("Invalid input: `displayOrder` must be an integer")
        made = self._groups[obj][name] = _group(name, label, order)
        return made


def _group(name: str, label: str, order: int) -> dict[str, Any]:
    return {"name": name, "label": label, "displayOrder": order, "archived": False}


def _options(raw: Any) -> list[dict[str, Any]]:
    """An enumeration's options: a list of objects with string `label` and `value`."""
    ok = isinstance(raw, list) and all(
        isinstance(o, dict) and isinstance(o.get("value"), str) and isinstance(o.get("label"), str)
        for o in raw
    )
    if not ok:
        raise validation("Invalid input: `options` must be a list of {label, value}")
    return [dict(option) for option in raw]
