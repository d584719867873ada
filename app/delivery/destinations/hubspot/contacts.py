"""Contacts upserted by `loke_customer_id`, with HubSpot's rule that an email is one contact's.

An email another contact holds is the one conflict a sync must settle itself: a contact with
that email and no LOKE id is adopted (the LOKE id and profile written onto it, so HubSpot never
holds the same person twice); an email that is another LOKE customer's, or that HubSpot calls
invalid, is left out and the customer written without it, the conflict shown on the
organization. Within one batch the first customer with an email keeps it (HubSpot refuses a
batch naming one email twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.delivery.destinations.hubspot import batches
from app.delivery.destinations.hubspot.api import HubSpotApi
from app.delivery.destinations.hubspot.memory import Conflict
from app.delivery.destinations.hubspot.outcomes import Outcomes
from app.delivery.destinations.hubspot.values import contact_properties

ID_PROPERTY = "loke_customer_id"
INVALID_EMAIL = "HubSpot calls the email invalid"


@dataclass
class ContactsWritten:
    """What the contacts step leaves for the memory and the later steps."""

    record_ids: dict[str, str] = field(default_factory=dict)  # customer id -> record id
    whole: list[str] = field(default_factory=list)  # written with their email (or none)
    conflicts: list[Conflict] = field(default_factory=list)


@dataclass
class _Input:
    index: int
    customer_id: str
    properties: dict[str, str]

    @property
    def email(self) -> str:
        return self.properties.get("email", "")

    def body(self, with_email: bool = True) -> dict[str, Any]:
        properties = dict(self.properties)
        if not with_email:
            properties.pop("email", None)
        return {"id": self.customer_id, "idProperty": ID_PROPERTY, "properties": properties,
                "objectWriteTraceId": str(self.index)}  # fmt: skip


def upsert(api: HubSpotApi, operations: list[tuple[int, dict[str, Any]]],
           outcomes: Outcomes) -> ContactsWritten:  # fmt: skip
    """Write the contact.upsert operations; settle each in `outcomes`."""
    written = ContactsWritten()
    inputs: dict[str, _Input] = {}
    without_email: dict[str, tuple[_Input, Conflict]] = {}
    holders: dict[str, str] = {}  # lower-cased email -> the batch's customer that keeps it
    for index, operation in operations:
        item = _Input(index, operation["customerId"], contact_properties(operation))
        if item.email:
            item.properties["email"] = item.email.strip()
        key = item.email.lower()
        if key and key in holders:
            reason = f"email also belongs to LOKE customer {holders[key]}"
            without_email[str(index)] = (item, Conflict(item.customer_id, item.email, reason))
            continue
        if key:
            holders[key] = item.customer_id
        inputs[str(index)] = item
    answer = batches.write(api, "contacts", "upsert", [i.body() for i in inputs.values()],
                           ID_PROPERTY)  # fmt: skip
    adopt: dict[str, tuple[_Input, str]] = {}  # trace -> (input, the contact holding its email)
    for trace, item in inputs.items():
        if trace in answer.results:
            _written(written, item, answer.results[trace], whole=True)
            continue
        error = answer.errors[trace]
        existing = batches.is_conflict(error) if item.email else None
        if existing is not None:
            adopt[trace] = (item, existing)
        elif item.email and batches.is_invalid_email(error):
            without_email[trace] = (item, Conflict(item.customer_id, item.email, INVALID_EMAIL))
        else:
            outcomes.error(item.index, error)
    if adopt:
        without_email.update(_adopt(api, adopt, written, outcomes))
    if without_email:
        _write_without_email(api, without_email, written, outcomes)
    return written


def _adopt(
    api: HubSpotApi, adopt: dict[str, tuple[_Input, str]], written: ContactsWritten,
    outcomes: Outcomes,
) -> dict[str, tuple[_Input, Conflict]]:  # fmt: skip
    """Write our customers onto the contacts holding their emails where those have no LOKE id;
    the others are written without the email."""
    holders = batches.read(api, "contacts", sorted({e for _, e in adopt.values()}),
                           [ID_PROPERTY, "email"])  # fmt: skip
    updates: dict[str, tuple[_Input, str]] = {}
    without: dict[str, tuple[_Input, Conflict]] = {}
    for trace, (item, existing) in adopt.items():
        holder = holders.get(existing)
        owner = ((holder or {}).get("properties") or {}).get(ID_PROPERTY) if holder else None
        if holder is None:
            outcomes.retry(item.index, f"the contact holding its email ({existing}) vanished")
        elif owner:
            reason = f"email belongs to contact {existing} of LOKE customer {owner}"
            without[trace] = (item, Conflict(item.customer_id, item.email, reason, existing))
        else:
            updates[trace] = (item, str(holder.get("id") or existing))
    if not updates:
        return without
    bodies = [{"id": record_id, "objectWriteTraceId": trace,
               "properties": {**item.properties, ID_PROPERTY: item.customer_id}}
              for trace, (item, record_id) in updates.items()]  # fmt: skip
    answer = batches.write(api, "contacts", "update", bodies)
    for trace, (item, record_id) in updates.items():
        if trace in answer.results:
            _written(written, item, answer.results[trace], whole=True)
            continue
        error = answer.errors[trace]
        if batches.is_conflict(error) is not None:
            # The customer has a contact of its own already: the email's holder stays as it is.
            reason = f"email belongs to contact {record_id}, which has no LOKE id"
            without[trace] = (item, Conflict(item.customer_id, item.email, reason, record_id))
        else:
            outcomes.error(item.index, error)
    return without


def _write_without_email(
    api: HubSpotApi, items: dict[str, tuple[_Input, Conflict]], written: ContactsWritten,
    outcomes: Outcomes,
) -> None:  # fmt: skip
    bodies = [item.body(with_email=False) for item, _ in items.values()]
    answer = batches.write(api, "contacts", "upsert", bodies, ID_PROPERTY)
    for trace, (item, conflict) in items.items():
        if trace in answer.results:
            _written(written, item, answer.results[trace], whole=False)
            written.conflicts.append(conflict)
        else:
            outcomes.error(item.index, answer.errors[trace])


def _written(written: ContactsWritten, item: _Input, result: dict[str, Any], whole: bool) -> None:
    if result.get("id") is not None:
        written.record_ids[item.customer_id] = str(result["id"])
    if whole:
        written.whole.append(item.customer_id)
