"""LOKE's values in HubSpot's formats: strings everywhere, dates at midnight UTC, datetimes in
ISO 8601 UTC, numbers plain, money in major units with two decimals, null as "" (clears)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from app.core.timestamps import as_utc, to_iso

CONTACT_FIELDS = {  # LOKE profile field -> (HubSpot property, kind)
    "email": ("email", "text"),
    "firstName": ("firstname", "text"),
    "lastName": ("lastname", "text"),
    "phoneNumber": ("phone", "text"),
    "dob": ("loke_dob", "date"),
    "gender": ("loke_gender", "text"),
    "hasAgreedToMarketing": ("loke_marketing_opt_in", "bool"),
    "createdAt": ("loke_created_at", "datetime"),
    "updatedAt": ("loke_updated_at", "datetime"),
}
STATISTICS_FIELDS = {
    "pointsBalance": ("loke_points_balance", "number"),
    "totalPointsEarned": ("loke_total_points_earned", "number"),
    "totalPointsRedeemed": ("loke_total_points_redeemed", "number"),
    "totalSpend": ("loke_total_spend", "money"),
    "lastPointsEarnedAt": ("loke_last_points_earned_at", "datetime"),
    "lastPointsRedeemedAt": ("loke_last_points_redeemed_at", "datetime"),
    "lastSpentAt": ("loke_last_spent_at", "datetime"),
}
ORDER_NAME = "LOKE payment"


def contact_properties(operation: dict[str, Any]) -> dict[str, str]:
    """A contact.upsert operation as the contact's properties (without `loke_customer_id`,
    which the upsert's id sets). Statistics not yet known are left as HubSpot has them."""
    properties = _mapped(operation.get("contact") or {}, CONTACT_FIELDS)
    if operation.get("statistics") is not None:
        properties.update(_mapped(operation["statistics"], STATISTICS_FIELDS))
    return properties


def order_properties(payment: dict[str, Any]) -> dict[str, str]:
    """A payment.upsert operation as an order's properties (without `loke_payment_id`)."""
    refunded = payment.get("status") == "refunded"
    location = payment.get("locationName")
    total = money(payment.get("total"))
    return {
        "hs_order_name": f"{ORDER_NAME} · {location}" if location else ORDER_NAME,
        "hs_total_price": total,
        "hs_currency_code": str(payment.get("currency") or ""),
        "hs_external_created_date": datetime_value(payment.get("completedAt")),
        "loke_payment_status": "refunded" if refunded else "completed",
        "loke_refunded_at": datetime_value(payment.get("refundedAt")),
        "hs_refund_amount": total if refunded else "",
    }


def line_item_properties(item: dict[str, Any]) -> dict[str, str]:
    """One item of a payment as a line item's properties (without `loke_line_item_id`): the
    unit price, never negative (HubSpot refuses negative prices)."""
    quantity = item.get("quantity")
    return {
        "name": str(item.get("name") or "Item"),
        "quantity": str(int(quantity)) if isinstance(quantity, int | float) else "1",
        "price": money(max(item.get("amount") or 0, 0)),
    }


def line_item_id(payment_id: str, item: dict[str, Any], position: int) -> str:
    """The item's unique id in HubSpot: its payment's and its own (or its position)."""
    return f"{payment_id}:{item.get('id') or position}"


def _mapped(values: dict[str, Any], fields: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {
        prop: FORMATS[kind](values.get(field)) for field, (prop, kind) in fields.items()
        if field in values
    }  # fmt: skip


def text(value: Any) -> str:
    """Text as it is; HubSpot refuses leading or trailing spaces only on non-text values."""
    return "" if value is None else str(value)


def money(cents: Any) -> str:
    """An amount in the lowest denomination, in major units with two decimals."""
    if not isinstance(cents, int | float):
        return ""
    return f"{int(cents) / 100:.2f}"


def number(value: Any) -> str:
    """A plain number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def bool_value(value: Any) -> str:
    """`true` or `false`."""
    return "" if value is None else "true" if value else "false"


def date_value(value: Any) -> str:
    """`YYYY-MM-DD` (a date property is midnight UTC); anything else clears it."""
    if not isinstance(value, str):
        return ""
    try:
        return dt.date.fromisoformat(value.strip()[:10]).isoformat()
    except ValueError:
        return ""


def datetime_value(value: Any) -> str:
    """ISO 8601 in UTC, to the millisecond."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        return to_iso(as_utc(dt.datetime.fromisoformat(value))) or ""
    except ValueError:
        return ""


FORMATS = {"text": text, "money": money, "number": number, "bool": bool_value,
           "date": date_value, "datetime": datetime_value}  # fmt: skip
