"""One HubSpot account (portal): its properties, records, associations and lists, and the
merge that touches all of them."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from devtools.hubspot.associations import AssociationStore
from devtools.hubspot.lists import ListStore
from devtools.hubspot.properties import Schema
from devtools.hubspot.records import RecordStore


class Account:
    """Everything one portal holds; not locked: the server holds its lock around every use."""

    def __init__(self, name: str, portal_id: int, next_id: Callable[[], str]) -> None:
        self.name = name
        self.portal_id = portal_id
        self.schema = Schema()
        self.records = RecordStore(next_id)
        self.links = AssociationStore()
        self.lists = ListStore(next_id, self.records)
        self.rng = random.Random(portal_id)  # the order of batch results, not a secret

    def info(self) -> dict[str, Any]:
        """`GET /account-info/{v}/details`."""
        return {
            "portalId": self.portal_id,
            "accountType": "STANDARD",
            "timeZone": "UTC",
            "companyCurrency": "AUD",
            "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1",
        }

    def merge(self, primary_id: str, secondary_id: str) -> str:
        """Merge two contacts; memberships and associations of both move to the new id."""
        merged = self.records.merge(primary_id, secondary_id)
        for old_id in (primary_id, secondary_id):
            self.links.move("contacts", old_id, merged.id)
            self.lists.move(old_id, merged.id)
        return merged.id
