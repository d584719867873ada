"""The property group and properties the destination writes, created in the portal when missing.

HubSpot has no idempotency key for these: read what exists, create what is missing (a 409
"exists" from a concurrent creator is success), and bring a drifted label or group back. A
property of ours that exists with another type or uniqueness cannot be changed by an API
call: connecting is refused with what to fix.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from app.delivery.destinations.base import DestinationRefused
from app.delivery.destinations.hubspot.api import PROPERTIES, HubSpotApi, HubSpotError

GROUP = "loke"
GROUP_LABEL = "LOKE"
BOOL_OPTIONS = [
    {"label": "Yes", "value": "true", "displayOrder": 0},
    {"label": "No", "value": "false", "displayOrder": 1},
]


@dataclass(frozen=True)
class Wanted:
    """One property the destination writes."""

    name: str
    label: str
    type: str  # string | number | date | datetime | bool
    unique: bool = False

    def body(self) -> dict[str, Any]:
        """The POST body that creates it in group `loke`."""
        field_type = {"string": "text", "number": "number", "date": "date", "datetime": "date",
                      "bool": "booleancheckbox"}[self.type]  # fmt: skip
        body: dict[str, Any] = {"name": self.name, "label": self.label, "type": self.type,
                                "fieldType": field_type, "groupName": GROUP}  # fmt: skip
        if self.unique:
            body["hasUniqueValue"] = True
        if self.type == "bool":
            body["options"] = BOOL_OPTIONS
        return body


WANTED: dict[str, tuple[Wanted, ...]] = {
    "contacts": (
        Wanted("loke_customer_id", "LOKE customer ID", "string", unique=True),
        Wanted("loke_dob", "LOKE date of birth", "date"),
        Wanted("loke_gender", "LOKE gender", "string"),
        Wanted("loke_marketing_opt_in", "LOKE marketing opt-in", "bool"),
        Wanted("loke_created_at", "LOKE created at", "datetime"),
        Wanted("loke_updated_at", "LOKE updated at", "datetime"),
        Wanted("loke_points_balance", "LOKE points balance", "number"),
        Wanted("loke_total_points_earned", "LOKE total points earned", "number"),
        Wanted("loke_total_points_redeemed", "LOKE total points redeemed", "number"),
        Wanted("loke_total_spend", "LOKE total spend", "number"),
        Wanted("loke_last_points_earned_at", "LOKE last points earned at", "datetime"),
        Wanted("loke_last_points_redeemed_at", "LOKE last points redeemed at", "datetime"),
        Wanted("loke_last_spent_at", "LOKE last spent at", "datetime"),
    ),
    "orders": (
        Wanted("loke_payment_id", "LOKE payment ID", "string", unique=True),
        Wanted("loke_payment_status", "LOKE payment status", "string"),
        Wanted("loke_refunded_at", "LOKE refunded at", "datetime"),
    ),
    # Not in the contract's list: line items need a unique id of their own for an upsert
    # sent twice (a lost answer) to update them rather than add them again.
    "line_items": (Wanted("loke_line_item_id", "LOKE line item ID", "string", unique=True),),
}


def provision(api: HubSpotApi) -> None:
    """Create the group and the properties each object misses; fix drifted labels and groups."""
    for object_type, wanted in WANTED.items():
        _group(api, object_type)
        answer = api.call("GET", f"{PROPERTIES}/{object_type}")
        existing = {p.get("name"): p for p in answer.get("results") or [] if isinstance(p, dict)}
        for prop in wanted:
            have = existing.get(prop.name)
            if have is None:
                _create(api, object_type, prop)
            else:
                _reconcile(api, object_type, prop, have)


def _group(api: HubSpotApi, object_type: str) -> None:
    if api.get(f"{PROPERTIES}/{object_type}/groups/{GROUP}") is not None:
        return
    try:
        api.post(f"{PROPERTIES}/{object_type}/groups",
                 {"name": GROUP, "label": GROUP_LABEL, "displayOrder": -1})  # fmt: skip
    except HubSpotError as exc:
        if exc.status != 409:
            raise DestinationRefused(f"HubSpot refused the {object_type} property group "
                                     f"'{GROUP}': {exc.message}") from None  # fmt: skip


def _create(api: HubSpotApi, object_type: str, prop: Wanted) -> None:
    try:
        api.post(f"{PROPERTIES}/{object_type}", prop.body())
    except HubSpotError as exc:
        if exc.status != 409:
            raise DestinationRefused(f"HubSpot refused the {object_type} property "
                                     f"'{prop.name}': {exc.message}") from None  # fmt: skip


def _reconcile(api: HubSpotApi, object_type: str, prop: Wanted, have: dict[str, Any]) -> None:
    if have.get("type") != prop.type or bool(have.get("hasUniqueValue")) != prop.unique:
        unique = " with unique values" if prop.unique else ""
        raise DestinationRefused(
            f"the {object_type} property '{prop.name}' exists in HubSpot as type "
            f"{have.get('type')!r} (unique: {bool(have.get('hasUniqueValue'))}); it must be "
            f"{prop.type!r}{unique}: delete or rename it in HubSpot, then connect again"
        )
    if have.get("label") != prop.label or have.get("groupName") != GROUP:
        with suppress(HubSpotError):  # a label is cosmetic: the property takes our values
            api.call("PATCH", f"{PROPERTIES}/{object_type}/{prop.name}",
                     {"label": prop.label, "groupName": GROUP})  # fmt: skip
