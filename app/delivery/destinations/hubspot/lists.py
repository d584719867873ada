"""LOKE lists as MANUAL HubSpot contact lists named `listNamePrefix` + the LOKE name.

A list is found by its name first (adopting one made by hand or by an earlier install), made
when missing, and renamed when LOKE renames it. Members are added and removed by contact record
id in one call per list; ids HubSpot calls missing (a contact merged since) are looked up again
by `loke_customer_id` and tried once more.
"""

from __future__ import annotations

from typing import Any

from app.delivery.destinations.hubspot.api import LISTS, HubSpotApi, HubSpotError, quoted
from app.delivery.destinations.hubspot.lookup import contact_ids
from app.delivery.destinations.hubspot.memory import PortalMemory
from app.delivery.destinations.hubspot.outcomes import Outcomes

CONTACTS = "0-1"


class ListRefused(Exception):
    """The list cannot take memberships (a list of that name exists and is not MANUAL)."""


def apply(
    api: HubSpotApi, memory: PortalMemory, prefix: str,
    operations: list[tuple[int, dict[str, Any]]], known: dict[str, str], outcomes: Outcomes,
) -> None:  # fmt: skip
    """Settle the list.add and list.remove operations, list by list."""
    by_list: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for index, operation in operations:
        by_list.setdefault(operation["listId"], []).append((index, operation))
    names = memory.list_names(by_list)
    remembered = memory.lists(by_list)
    for list_id, ops in sorted(by_list.items()):
        name = names.get(list_id) or next((op["listName"] for _, op in ops if op.get("listName")),
                                          list_id)  # fmt: skip
        try:
            crm_list = _the_list(api, memory, list_id, prefix + name, remembered.get(list_id))
            _members(api, memory, crm_list, ops, known, outcomes)
        except ListRefused as exc:
            for index, _ in ops:
                outcomes.reject(index, str(exc))
        except HubSpotError as exc:
            for index, _ in ops:
                outcomes.retry(index, f"list {prefix + name!r}: {exc.message}")


def _the_list(
    api: HubSpotApi, memory: PortalMemory, list_id: str, name: str,
    remembered: tuple[str, str] | None,
) -> str:  # fmt: skip
    """The HubSpot list id for the LOKE list, under its current name."""
    if remembered is not None:
        crm_list, had_name = remembered
        if had_name == name:
            return crm_list
        try:
            api.call("PUT", f"{LISTS}/{crm_list}/update-list-name?listName={quoted(name)}")
            memory.remember_list(list_id, crm_list, name)
            return crm_list
        except HubSpotError as exc:
            if exc.status != 404:
                raise
            memory.forget_list(list_id)  # deleted in the portal: found or made again below
    found = api.get(f"{LISTS}/object-type-id/{CONTACTS}/name/{quoted(name)}")
    if found is None:
        try:
            found = api.post(LISTS, {"name": name, "objectTypeId": CONTACTS,
                                     "processingType": "MANUAL"})  # fmt: skip
        except HubSpotError as exc:
            if "DUPLICATE" not in exc.sub_category.upper():
                raise
            found = api.get(f"{LISTS}/object-type-id/{CONTACTS}/name/{quoted(name)}")
    details = (found or {}).get("list") or {}
    if not details.get("listId"):
        raise HubSpotError(404, {"message": f"HubSpot did not return the list {name!r}"})
    if details.get("processingType") not in ("MANUAL", "SNAPSHOT", None):
        raise ListRefused(f"the HubSpot list {name!r} exists and is {details['processingType']}:"
                          " memberships can only be set on a MANUAL list")  # fmt: skip
    memory.remember_list(list_id, str(details["listId"]), name)
    return str(details["listId"])


def _members(
    api: HubSpotApi, memory: PortalMemory, crm_list: str, ops: list[tuple[int, dict[str, Any]]],
    known: dict[str, str], outcomes: Outcomes,
) -> None:  # fmt: skip
    customers = [op["customerId"] for _, op in ops]
    ids = contact_ids(api, memory, customers, known)
    missing = _change(api, crm_list, ops, ids, outcomes)
    if missing:  # merged or deleted contacts: their ids now, once more
        memory.forget_contacts(missing)
        again = contact_ids(api, memory, missing, {}, fresh=True)
        retried = [(i, op) for i, op in ops if op["customerId"] in missing]
        for customer in _change(api, crm_list, retried, again, outcomes):
            for index, op in retried:
                if op["customerId"] == customer:
                    outcomes.retry(index, "HubSpot does not find the customer's contact")


def _change(
    api: HubSpotApi, crm_list: str, ops: list[tuple[int, dict[str, Any]]], ids: dict[str, str],
    outcomes: Outcomes,
) -> set[str]:  # fmt: skip
    """One add-and-remove call; returns the customers whose ids HubSpot called missing."""
    add: list[str] = []
    remove: list[str] = []
    for index, op in ops:
        record = ids.get(op["customerId"])
        if record is None and op["type"] == "list.add":
            outcomes.retry(index, "the customer's contact is not in HubSpot yet")
        elif record is not None:
            (add if op["type"] == "list.add" else remove).append(record)
    if not add and not remove:
        return set()
    answer = api.call("PUT", f"{LISTS}/{crm_list}/memberships/add-and-remove",
                      {"recordIdsToAdd": add, "recordIdsToRemove": remove})  # fmt: skip
    missing = {str(i) for i in answer.get("recordIdsMissing") or []}
    return {c for c, record in ids.items() if record in missing}
