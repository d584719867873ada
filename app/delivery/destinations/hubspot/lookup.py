"""Which HubSpot contact is a LOKE customer's: remembered, else looked up in bulk by
`loke_customer_id` (100 a call) and remembered from then on."""

from __future__ import annotations

from collections.abc import Iterable

from app.delivery.destinations.hubspot import batches
from app.delivery.destinations.hubspot.api import HubSpotApi
from app.delivery.destinations.hubspot.contacts import ID_PROPERTY
from app.delivery.destinations.hubspot.memory import PortalMemory


def contact_ids(
    api: HubSpotApi, memory: PortalMemory, customer_ids: Iterable[str], known: dict[str, str],
    fresh: bool = False,
) -> dict[str, str]:  # fmt: skip
    """Record ids of these customers' contacts; a customer HubSpot has no contact for is left
    out. `known` (just written) wins; `fresh` skips the memory (its ids proved stale)."""
    wanted = sorted(set(customer_ids))
    ids = {c: known[c] for c in wanted if c in known}
    missing = [c for c in wanted if c not in ids]
    if missing and not fresh:
        ids.update(memory.contact_ids(missing))
        missing = [c for c in missing if c not in ids]
    if missing:
        found = batches.read(api, "contacts", missing, [ID_PROPERTY], id_property=ID_PROPERTY)
        looked_up = {c: str(found[c]["id"]) for c in missing if c in found}
        memory.remember_contacts(looked_up)
        ids.update(looked_up)
    return ids
