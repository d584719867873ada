"""LOKE's truth against what the fake HubSpot holds: contacts by `loke_customer_id`, orders by
`loke_payment_id` with their contact, and each opted-in list, member for member.

The expected values are written here from the README's HubSpot mapping, not taken from the
destination's code: a mistake in its formats must show on the page, not be copied into the
check. A contact without its email is an email conflict, not a difference, when another contact
holds that email: HubSpot keeps an email on one contact only, so the service writes the customer
without it and shows the conflict on the organization, rather than make a duplicate. Every record
that does not match is one row of `differences`, so the counts and the list shown always agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from devtools.demo.fidelity import list_report
from devtools.demo.verdict import CUSTOMER, PAYMENT, difference, member_differences, verdict
from devtools.sandbox.payloads import OLDEST, parse_ts
from devtools.sandbox.state import OrgSnapshot

CUSTOMER_ID = "loke_customer_id"
PAYMENT_ID = "loke_payment_id"
ASSOCIATION = "contact association"
UNKNOWN_TO_LOKE = "in HubSpot, unknown to LOKE"


@dataclass(frozen=True)
class Holdings:
    """What the portal holds, read in one go under the fake's lock."""

    contacts: list[dict[str, Any]]  # {"id", "properties"}
    orders: list[dict[str, Any]]
    order_contacts: set[tuple[str, str]]  # (order id, contact id) associated
    lists: dict[str, set[str]]  # list name -> member record ids


def compare(
    truth: OrgSnapshot, held: Holdings, list_ids: Sequence[str], prefix: str
) -> dict[str, Any]:
    """The fidelity report (JSON-ready), in the `http` demo's shape: `customers` are contacts,
    `payments` orders, `lists` the opted-in lists under their HubSpot names (`prefix` + name)."""
    by_customer = _group(held.contacts, CUSTOMER_ID)
    differences: list[dict[str, Any]] = []
    customers = _contacts(truth.customers, by_customer, held.contacts, differences)
    contact_of = {cid: found[0]["id"] for cid, found in by_customer.items() if len(found) == 1}
    payments = _orders(truth.payments, _group(held.orders, PAYMENT_ID), held.order_contacts,
                       contact_of, differences)  # fmt: skip
    customer_of = {c["id"]: c["properties"].get(CUSTOMER_ID) for c in held.contacts}
    lists = []
    for list_id in list_ids:
        at_loke = truth.lists.get(list_id)  # None: deleted at LOKE
        name = prefix + at_loke[0] if at_loke else None
        records = held.lists.get(name) if name else None
        # A member without a LOKE id (or one LOKE does not know) still counts, as an extra.
        ids = {customer_of.get(r) or f"record {r}" for r in records or ()}
        entry = list_report(list_id, at_loke, ids)
        lists.append({**entry, "hubspotName": name, "exists": records is not None})
        members = at_loke[1] if at_loke is not None else frozenset[str]()
        differences += member_differences(entry["name"], members, ids, "HubSpot")
    return {
        **verdict(differences),
        "customers": customers,
        "payments": payments,
        "lists": lists,
        "listsMatch": all(entry["matches"] for entry in lists),
        "differences": differences,
    }


def differing_properties(
    customer: Mapping[str, Any], contact: Mapping[str, Any], holders: Mapping[str, set[str]]
) -> tuple[list[str], bool]:
    """The properties of `contact` that differ from LOKE's customer, and whether its email is
    missing as a conflict rather than a difference: `holders` are the contact ids holding each
    (lower-cased) email, and one other than `contact` holds it."""
    wrong = []
    conflict = False
    properties = contact["properties"]
    for name, (expected, same) in _expected(customer).items():
        got = properties.get(name) or None  # "" clears a HubSpot value: the same as unset
        if same(expected, got):
            continue
        others = holders.get(str(expected).lower(), set()) - {contact["id"]}
        if name == "email" and got is None and others:
            conflict = True
        else:
            wrong.append(name)
    return wrong, conflict


def _expected(customer: Mapping[str, Any]) -> dict[str, tuple[Any, Callable[[Any, Any], bool]]]:
    """HubSpot property -> (LOKE's value, how to compare it with HubSpot's string)."""
    expected: dict[str, tuple[Any, Callable[[Any, Any], bool]]] = {
        "email": (customer.get("email"), _text_nocase),
        "firstname": (customer.get("firstName"), _text),
        "lastname": (customer.get("lastName"), _text),
        "phone": (customer.get("phoneNumber"), _text),
        "loke_marketing_opt_in": (customer.get("hasAgreedToMarketing"), _bool),
        "loke_updated_at": (customer.get("updatedAt"), _instant),
    }
    stats = customer.get("statistics")
    if stats is not None:  # statistics not known yet leave HubSpot's values as they are
        expected["loke_total_spend"] = (stats.get("totalSpend"), _cents)
        expected["loke_points_balance"] = (stats.get("pointsBalance"), _number)
    return expected


def _contacts(
    truth: Mapping[str, dict[str, Any]],
    by_customer: Mapping[str, list[dict[str, Any]]],
    contacts: list[dict[str, Any]],
    differences: list[dict[str, Any]],
) -> dict[str, Any]:
    matching = differing = missing = duplicated = conflicts = 0
    holders = _holders(contacts)
    for customer_id, customer in truth.items():
        found = by_customer.get(customer_id) or []
        if not found:
            missing += 1
            differences.append(difference(CUSTOMER, customer_id, "no contact in HubSpot"))
        elif len(found) > 1:
            duplicated += 1
            differences.append(difference(CUSTOMER, customer_id, f"{len(found)} contacts"))
        else:
            wrong, conflict = differing_properties(customer, found[0], holders)
            if wrong:
                differing += 1
                differences.append(difference(CUSTOMER, customer_id, "differs", wrong))
            else:
                matching += 1
                conflicts += conflict
    extra = _unknown(by_customer, truth, CUSTOMER, differences)
    return {"loke": len(truth), "crm": sum(map(len, by_customer.values())), "matching": matching,
            "conflicts": conflicts, "differing": differing, "missing": missing,
            "duplicated": duplicated, "extra": extra,
            "portalOwn": len(contacts) - sum(map(len, by_customer.values()))}  # fmt: skip


def _orders(
    truth: Mapping[str, dict[str, Any]],
    by_payment: Mapping[str, list[dict[str, Any]]],
    links: set[tuple[str, str]],
    contact_of: Mapping[str, str],
    differences: list[dict[str, Any]],
) -> dict[str, Any]:
    # Payments without a customer are kept by the service and never delivered (contract).
    expected = {pid: p for pid, p in truth.items() if p.get("customer")}
    contacts_of: dict[str, set[str]] = {}
    for order_id, contact_id in links:
        contacts_of.setdefault(order_id, set()).add(contact_id)
    matching = differing = missing = duplicated = 0
    for payment_id, payment in expected.items():
        found = by_payment.get(payment_id) or []
        if len(found) != 1:
            missing += not found
            duplicated += len(found) > 1
            problem = f"{len(found)} orders" if found else "no order in HubSpot"
            differences.append(difference(PAYMENT, payment_id, problem))
            continue
        order = found[0]
        status = "refunded" if payment.get("refundedAt") else "completed"
        wrong = [] if order["properties"].get("loke_payment_status") == status else [
            "loke_payment_status"]  # fmt: skip
        if not _cents(payment.get("total"), order["properties"].get("hs_total_price")):
            wrong.append("hs_total_price")
        contact = contact_of.get(payment["customer"].get("id"))
        # Exactly the customer's contact: an order on nobody's, or on two, is not LOKE's truth.
        if contact is None or contacts_of.get(order["id"]) != {contact}:
            wrong.append(ASSOCIATION)
        if wrong:
            differing += 1
            differences.append(difference(PAYMENT, payment_id, "differs", wrong))
        else:
            matching += 1
    held = sum(map(len, by_payment.values()))
    extra = _unknown(by_payment, expected, PAYMENT, differences)
    return {"loke": len(expected), "crm": held, "matching": matching, "differing": differing,
            "missing": missing, "duplicated": duplicated, "extra": extra}  # fmt: skip


def _group(records: list[dict[str, Any]], id_property: str) -> dict[str, list[dict[str, Any]]]:
    """Records by their LOKE id (records without one are the portal's own)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        loke_id = record["properties"].get(id_property)
        if loke_id:
            grouped.setdefault(loke_id, []).append(record)
    return grouped


def _unknown(
    grouped: Mapping[str, list[dict[str, Any]]],
    truth: Mapping[str, Any],
    record: str,
    differences: list[dict[str, Any]],
) -> int:
    """Records carrying a LOKE id LOKE does not know (one row each: two with the same id are two
    records too many); their count."""
    rows = [difference(record, loke_id, UNKNOWN_TO_LOKE)
            for loke_id in sorted(grouped) if loke_id not in truth
            for _ in grouped[loke_id]]  # fmt: skip
    differences += rows
    return len(rows)


def _holders(contacts: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Lower-cased email -> the ids of the contacts holding it (additional emails count: HubSpot
    keeps those unique too)."""
    held: dict[str, set[str]] = {}
    for contact in contacts:
        props = contact["properties"]
        extra = (props.get("hs_additional_emails") or "").split(";")
        for email in (props.get("email") or "", *extra):
            if email.strip():
                held.setdefault(email.strip().lower(), set()).add(contact["id"])
    return held


def _text(expected: Any, got: str | None) -> bool:
    return (None if expected in (None, "") else str(expected)) == got


def _text_nocase(expected: Any, got: str | None) -> bool:
    return _text(expected and str(expected).lower(), got and got.lower())


def _bool(expected: Any, got: str | None) -> bool:
    return (None if expected is None else "true" if expected else "false") == got


def _instant(expected: Any, got: str | None) -> bool:
    """The same moment: LOKE's ISO timestamp against HubSpot's ISO or epoch milliseconds."""
    if expected is None or got is None:
        return expected is None and got is None
    held = parse_ts(got) if not got.isdigit() else None
    if held is None:
        return parse_ts(expected).timestamp() * 1000 == int(got)
    return held != OLDEST and held == parse_ts(expected)


def _number(expected: Any, got: str | None) -> bool:
    return _decimal(expected) == _decimal(got) if expected is not None else got is None


def _cents(expected: Any, got: str | None) -> bool:
    """LOKE's amount in cents against HubSpot's in major units ("12.34" for 1234)."""
    if expected is None:
        return got is None
    held = _decimal(got)
    return held is not None and held * 100 == _decimal(expected)


def _decimal(value: Any) -> Decimal | None:
    """Numbers compared by value: HubSpot may write "12.3" for "12.30"."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None
