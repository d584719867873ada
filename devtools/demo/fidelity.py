"""LOKE's truth against the CRM's state: which customers, payments and list members match.

A customer matches when every field the `http` destination carries (the contact and its
statistics) equals LOKE's; timestamps are compared as instants, not as strings. Every record that
does not match is one row of `differences`, so the counts and the list shown always agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from devtools.demo.verdict import CUSTOMER, PAYMENT, difference, member_differences, verdict
from devtools.sandbox.payloads import STATISTICS_COUNTERS, STATISTICS_TIMES, parse_ts
from devtools.sandbox.state import OrgSnapshot

CONTACT_FIELDS = ("email", "firstName", "lastName", "phoneNumber", "dob", "gender",
                  "hasAgreedToMarketing", "createdAt", "updatedAt")  # fmt: skip
TIME_FIELDS = frozenset(("createdAt", "updatedAt", *STATISTICS_TIMES))
NOT_IN_CRM = "not in the CRM"
UNKNOWN_TO_LOKE = "in the CRM, unknown to LOKE"


def compare(
    truth: OrgSnapshot,
    contacts: Mapping[str, dict[str, Any]],
    payments: Mapping[str, dict[str, Any]],
    lists: Mapping[str, set[str]],
    list_ids: Sequence[str],
) -> dict[str, Any]:
    """The fidelity report (JSON-ready). `contacts`/`payments` are the newest operation the CRM
    applied per customer/payment id; `lists` its members per list id; `list_ids` the lists the
    organization opted into (only those are meant to reach the CRM). `matches` only when all
    of it does, lists included; `differences` names every record that does not."""
    differences: list[dict[str, Any]] = []
    customers = _customers(truth.customers, contacts, differences)
    paid = _payments(truth.payments, payments, differences)
    chosen = []
    for list_id in list_ids:
        at_loke = truth.lists.get(list_id)
        held = lists.get(list_id, set())
        entry = list_report(list_id, at_loke, held)
        chosen.append(entry)
        members = at_loke[1] if at_loke is not None else frozenset[str]()
        differences += member_differences(entry["name"], members, held, "CRM")
    return {
        **verdict(differences),
        "customers": customers,
        "payments": paid,
        "lists": chosen,
        "listsMatch": all(entry["matches"] for entry in chosen),
        "differences": differences,
    }


def differing_fields(customer: Mapping[str, Any], op: Mapping[str, Any]) -> list[str]:
    """Names of the fields where the CRM's `contact.upsert` differs from LOKE's customer."""
    contact = op.get("contact") or {}
    wrong = [f for f in CONTACT_FIELDS if not _same(f, customer.get(f), contact.get(f))]
    expected, got = customer.get("statistics") or {}, op.get("statistics") or {}
    for field in (*STATISTICS_COUNTERS, *STATISTICS_TIMES):
        if not _same(field, expected.get(field), got.get(field)):
            wrong.append(f"statistics.{field}")
    return wrong


def _customers(
    truth: Mapping[str, dict[str, Any]],
    contacts: Mapping[str, dict[str, Any]],
    differences: list[dict[str, Any]],
) -> dict[str, Any]:
    matching, differing, missing = 0, 0, 0
    for customer_id, customer in truth.items():
        op = contacts.get(customer_id)
        if op is None:
            missing += 1
            differences.append(difference(CUSTOMER, customer_id, NOT_IN_CRM))
        elif fields := differing_fields(customer, op):
            differing += 1
            differences.append(difference(CUSTOMER, customer_id, "differs", fields))
        else:
            matching += 1
    extra = sorted(customer_id for customer_id in contacts if customer_id not in truth)
    differences += [difference(CUSTOMER, customer_id, UNKNOWN_TO_LOKE) for customer_id in extra]
    return {"loke": len(truth), "crm": len(contacts), "matching": matching,
            "differing": differing, "missing": missing, "extra": len(extra)}  # fmt: skip


def _payments(
    truth: Mapping[str, dict[str, Any]],
    delivered: Mapping[str, dict[str, Any]],
    differences: list[dict[str, Any]],
) -> dict[str, Any]:
    # Payments without a customer are kept by the service and never delivered (contract).
    expected = {pid: p for pid, p in truth.items() if p.get("customer")}
    matching = differing = missing = 0
    for payment_id, payment in expected.items():
        op = delivered.get(payment_id)
        status = "refunded" if payment.get("refundedAt") else "completed"
        if op is None:
            missing += 1
            differences.append(difference(PAYMENT, payment_id, NOT_IN_CRM))
            continue
        wrong = [] if op.get("status") == status else ["status"]
        if op.get("total") != payment.get("total"):
            wrong.append("total")
        if wrong:
            differing += 1
            differences.append(difference(PAYMENT, payment_id, "differs", wrong))
        else:
            matching += 1
    extra = sorted(payment_id for payment_id in delivered if payment_id not in expected)
    differences += [difference(PAYMENT, payment_id, UNKNOWN_TO_LOKE) for payment_id in extra]
    return {"loke": len(expected), "crm": len(delivered), "matching": matching,
            "differing": differing, "missing": missing, "extra": len(extra)}  # fmt: skip


def list_report(
    list_id: str, truth: tuple[str, frozenset[str]] | None, crm: set[str]
) -> dict[str, Any]:
    """One opted-in list: LOKE's (name, member ids) against the customer ids the CRM holds in
    it (None: the list is gone at LOKE, so the CRM should hold nobody)."""
    name, members = truth if truth is not None else ("(deleted at LOKE)", frozenset[str]())
    missing, extra = len(members - crm), len(crm - members)
    return {"id": list_id, "name": name, "loke": len(members), "crm": len(crm),
            "matching": len(members & crm), "missing": missing, "extra": extra,
            "matches": not missing and not extra}  # fmt: skip


def _same(field: str, expected: object, got: object) -> bool:
    if field in TIME_FIELDS and (expected is not None or got is not None):
        return expected is not None and got is not None and parse_ts(expected) == parse_ts(got)
    return expected == got
