"""Payments as HubSpot orders, upserted by `loke_payment_id`, each associated with its
customer's contact and with its items as line items (upserted by `loke_line_item_id`, so an
answer lost and the batch sent again never adds them twice).

A refund is the same order with `loke_payment_status` refunded and `hs_refund_amount` set; the
mirror never lets a refunded payment go back to completed, and each batch is built from its
newest state, so a late completion cannot undo it here either.
"""

from __future__ import annotations

from typing import Any

from app.delivery.destinations.hubspot import batches
from app.delivery.destinations.hubspot.api import ASSOCIATIONS, HubSpotApi, HubSpotError
from app.delivery.destinations.hubspot.lookup import contact_ids
from app.delivery.destinations.hubspot.memory import PortalMemory
from app.delivery.destinations.hubspot.outcomes import Outcomes
from app.delivery.destinations.hubspot.values import (
    line_item_id,
    line_item_properties,
    order_properties,
)

ORDER_ID = "loke_payment_id"
LINE_ITEM_ID = "loke_line_item_id"


def upsert(
    api: HubSpotApi, memory: PortalMemory, operations: list[tuple[int, dict[str, Any]]],
    known: dict[str, str], outcomes: Outcomes,
) -> None:  # fmt: skip
    """Write the payment.upsert operations; settle each in `outcomes`."""
    contacts = contact_ids(api, memory, [op["customerId"] for _, op in operations], known)
    ready: dict[str, tuple[int, dict[str, Any], str]] = {}  # trace -> (index, op, contact)
    for index, operation in operations:
        contact = contacts.get(operation["customerId"])
        if contact is None:
            outcomes.retry(index, "the customer's contact is not in HubSpot yet")
        else:
            ready[str(index)] = (index, operation, contact)
    if not ready:
        return
    answer = batches.write(api, "orders", "upsert", [
        {"id": op["paymentId"], "idProperty": ORDER_ID, "properties": order_properties(op),
         "objectWriteTraceId": trace}
        for trace, (_, op, _) in ready.items()
    ], ORDER_ID)  # fmt: skip
    orders: dict[str, str] = {}  # trace -> order id
    for trace, (index, _, _) in ready.items():
        if trace in answer.results:
            orders[trace] = str(answer.results[trace]["id"])
        else:
            outcomes.error(index, answer.errors[trace])
    items = _line_items(api, ready, orders, outcomes)
    pairs = [(orders[t], ready[t][2], t) for t in orders if not outcomes.failed(ready[t][0])]
    _associate(api, "orders", "contacts", pairs, ready, outcomes)
    _associate(api, "orders", "line_items", items, ready, outcomes)
    # A contact id that would not associate may be a merged contact's old one: look it up
    # again next time.
    stale = [ready[t][1]["customerId"] for _, _, t in pairs if outcomes.failed(ready[t][0])]
    if stale:
        memory.forget_contacts(stale)


def _line_items(
    api: HubSpotApi, ready: dict[str, tuple[int, dict[str, Any], str]], orders: dict[str, str],
    outcomes: Outcomes,
) -> list[tuple[str, str, str]]:  # fmt: skip
    """Upsert the items of the orders written; (order id, line item id, trace) of each."""
    inputs: list[dict[str, Any]] = []
    owner: dict[str, str] = {}  # item trace -> the order's trace
    for trace in orders:
        payment = ready[trace][1]
        for position, item in enumerate(payment.get("items") or []):
            item_trace = f"{trace}:{position}"
            owner[item_trace] = trace
            inputs.append({"id": line_item_id(payment["paymentId"], item, position),
                           "idProperty": LINE_ITEM_ID, "properties": line_item_properties(item),
                           "objectWriteTraceId": item_trace})  # fmt: skip
    if not inputs:
        return []
    answer = batches.write(api, "line_items", "upsert", inputs, LINE_ITEM_ID)
    pairs = []
    for item_trace, trace in owner.items():
        if item_trace in answer.results:
            pairs.append((orders[trace], str(answer.results[item_trace]["id"]), trace))
        else:
            outcomes.error(ready[trace][0], answer.errors[item_trace])
    return pairs


def _associate(
    api: HubSpotApi, from_type: str, to_type: str, pairs: list[tuple[str, str, str]],
    ready: dict[str, tuple[int, dict[str, Any], str]], outcomes: Outcomes,
) -> None:  # fmt: skip
    """Associate each pair with HubSpot's default type; an error retries the payment."""
    path = f"{ASSOCIATIONS}/{from_type}/{to_type}/batch/associate/default"
    for start in range(0, len(pairs), batches.MAX_INPUTS):
        chunk = pairs[start : start + batches.MAX_INPUTS]
        inputs = [{"from": {"id": f}, "to": {"id": t}} for f, t, _ in chunk]
        try:
            answer = api.call("PUT", path, {"inputs": inputs})
        except HubSpotError as exc:
            for _, _, trace in chunk:
                outcomes.retry(ready[trace][0], f"associating {to_type}: {exc.message}")
            continue
        missing = {str(i) for e in answer.get("errors") or [] if isinstance(e, dict)
                   for i in (e.get("context") or {}).get("ids") or []}  # fmt: skip
        done = {(str(r.get("fromObjectId")), str(r.get("toObjectId")))
                for r in answer.get("results") or [] if isinstance(r, dict)}  # fmt: skip
        for f, t, trace in chunk:
            if (f, t) not in done or f in missing or t in missing:
                outcomes.retry(ready[trace][0], f"HubSpot did not associate the {to_type}")
