"""LOKE's object and webhook shapes (loke-api.md), and its timestamp format.

One place builds every customer, payment and webhook body the sandbox serves or fires, so the
simulated LOKE, the tests and the benches all speak exactly the same dialect.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

OLDEST = datetime.min.replace(tzinfo=UTC)
TINY_FIELDS = ("id", "email", "firstName", "lastName", "phoneNumber")
STATISTICS_TIMES = ("lastPointsEarnedAt", "lastPointsRedeemedAt", "lastSpentAt")
STATISTICS_COUNTERS = ("pointsBalance", "totalPointsEarned", "totalPointsRedeemed", "totalSpend")
_AMOUNTS = ("creditAmount", "discountAmount", "externalAmount", "feeAmount", "tipAmount")


def parse_ts(value: object) -> datetime:
    """ISO 8601 (`Z` or offset) to an aware datetime; None/junk is OLDEST so it never wins."""
    if not isinstance(value, str) or not value:
        return OLDEST
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return OLDEST
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    """LOKE's timestamp shape: UTC, milliseconds, `Z` (naive datetimes are taken as UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def isoify(value: dict[str, Any]) -> dict[str, Any]:
    """A copy with every datetime inside (nested too) turned into `iso()` strings."""

    def convert(item: Any) -> Any:
        if isinstance(item, datetime):
            return iso(item)
        if isinstance(item, dict):
            return {k: convert(v) for k, v in item.items()}
        if isinstance(item, list):
            return [convert(v) for v in item]
        return item

    return {k: convert(v) for k, v in value.items()}


def default_org_name(org_id: str) -> str:
    """The name an organization gets when nobody gave it one (events and the API agree)."""
    return f"Org {org_id}"


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
    statistics: dict[str, Any] = dict.fromkeys(STATISTICS_COUNTERS, 0)
    statistics |= dict.fromkeys(STATISTICS_TIMES)
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
    return {k: customer.get(k) for k in TINY_FIELDS}


def customer_event(
    kind: str, org_id: str, customer: Mapping[str, Any], org_name: str | None = None
) -> dict[str, Any]:
    """`customer.created` / `customer.updated` body (`kind` with or without the prefix)."""
    event = kind if "." in kind else f"customer.{kind}"
    return {"event": event, "customer": dict(customer), "organization": _org(org_id, org_name)}


def statistics_event(
    org_id: str,
    customer_tiny: Mapping[str, Any],
    statistics: Mapping[str, Any],
    org_name: str | None = None,
) -> dict[str, Any]:
    """`customer.updated-statistics` body (a full customer is reduced to CustomerTiny)."""
    customer, org = tiny(customer_tiny), _org(org_id, org_name)
    stats = isoify(dict(statistics))
    event = "customer.updated-statistics"
    return {"event": event, "statistics": stats, "customer": customer, "organization": org}


def payment_event(
    kind: str,
    org_id: str,
    payment: Mapping[str, Any],
    location: Mapping[str, Any] | None = None,
    org_name: str | None = None,
) -> dict[str, Any]:
    """`payment.completed` / `payment.refunded` body (`kind` with or without the prefix)."""
    event = kind if "." in kind else f"payment.{kind}"
    body = {"event": event, "payment": dict(payment), "organization": _org(org_id, org_name)}
    if location is not None:
        body["location"] = dict(location)
    return body


def _org(org_id: str, name: str | None) -> dict[str, str]:
    return {"id": org_id, "name": name or default_org_name(org_id)}
