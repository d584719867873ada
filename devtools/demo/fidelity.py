"""LOKE's truth against the CRM's state: which customers, payments and list members match.

A customer matches when every field the `http` destination carries (the contact and its
statistics) equals LOKE's; timestamps are compared as instants, not as strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from devtools.sandbox.payloads import STATISTICS_COUNTERS, STATISTICS_TIMES, parse_ts
from devtools.sandbox.state import OrgSnapshot

CONTACT_FIELDS = ("email", "firstName", "lastName", "phoneNumber", "dob", "gender",
                  "hasAgreedToMarketing", "createdAt", "updatedAt")  # fmt: skip
TIME_FIELDS = frozenset(("createdAt", "updatedAt", *STATISTICS_TIMES))
EXAMPLES = 10


def compare(
    truth: OrgSnapshot,
    contacts: Mapping[str, dict[str, Any]],
    payments: Mapping[str, dict[str, Any]],
    lists: Mapping[str, set[str]],
    list_ids: Sequence[str],
) -> dict[str, Any]:
    """The fidelity report (JSON-ready). `contacts`/`payments` are the newest operation the CRM
    applied per customer/payment id; `lists` its members per list id; `list_ids` the lists the
    organization opted into (only those are meant to reach the CRM)."""
    customers = _customers(truth.customers, contacts)
    paid = _payments(truth.payments, payments)
    chosen = [list_report(list_id, truth.lists.get(list_id), lists.get(list_id, set()))
              for list_id in list_ids]  # fmt: skip
    return {
        "matches": customers["loke"] == customers["matching"]
        and not customers["extra"]
        and paid["loke"] == paid["matching"],
        "customers": customers,
        "payments": paid,
        "lists": chosen,
        "listsMatch": all(entry["matches"] for entry in chosen),
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
    truth: Mapping[str, dict[str, Any]], contacts: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    matching, differing, missing = 0, 0, 0
    examples: list[dict[str, Any]] = []
    for customer_id, customer in truth.items():
        op = contacts.get(customer_id)
        if op is None:
            missing += 1
            problem: dict[str, Any] = {"id": customer_id, "problem": "not in the CRM"}
        elif fields := differing_fields(customer, op):
            differing += 1
            problem = {"id": customer_id, "problem": "differs", "fields": fields}
        else:
            matching += 1
            continue
        if len(examples) < EXAMPLES:
            examples.append(problem)
    extra = sum(1 for customer_id in contacts if customer_id not in truth)
    return {"loke": len(truth), "crm": len(contacts), "matching": matching,
            "differing": differing, "missing": missing, "extra": extra,
            "examples": examples}  # fmt: skip


def _payments(
    truth: Mapping[str, dict[str, Any]], delivered: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    # Payments without a customer are kept by the service and never delivered (contract).
    expected = {pid: p for pid, p in truth.items() if p.get("customer")}
    matching = differing = missing = 0
    for payment_id, payment in expected.items():
        op = delivered.get(payment_id)
        status = "refunded" if payment.get("refundedAt") else "completed"
        if op is None:
            missing += 1
        elif op.get("status") == status and op.get("total") == payment.get("total"):
            matching += 1
        else:
            differing += 1
    return {"loke": len(expected), "crm": len(delivered), "matching": matching,
            "differing": differing, "missing": missing}  # fmt: skip


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
