"""The `hubspot` destination: customers as contacts, payments as orders with line items, and
opted-in lists as MANUAL lists, in HubSpot's batch APIs and within its limits.

A batch of the outbox is sent as a few HubSpot calls, in order: contacts (so that orders and
lists can name them), orders with their line items and associations, then list memberships.
Each operation settles on its own: applied, sent again later, or refused for good with
HubSpot's message. What HubSpot says about the whole account (429, 423, 401/403, 5xx) stops the
batch and is the sender's to act on.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from app.delivery.destinations.base import (
    Batch,
    BatchResult,
    CredentialsRejected,
    DestinationContext,
    DestinationRefused,
    RetryableDeliveryError,
)
from app.delivery.destinations.hubspot import contacts, lists, orders, schema
from app.delivery.destinations.hubspot.api import (
    ACCOUNT_DETAILS,
    DAILY_RECHECK_SECONDS,
    HubSpotApi,
    HubSpotError,
)
from app.delivery.destinations.hubspot.config import HubSpotConfig, token_id
from app.delivery.destinations.hubspot.memory import PortalMemory
from app.delivery.destinations.hubspot.outcomes import Outcomes

# Portals whose properties this process has checked (base URL, token): after a restart, the
# first batch checks again, in case someone deleted one in the portal meanwhile.
_provisioned: set[tuple[str, str]] = set()
_provisioned_lock = threading.Lock()  # one portal checked at a time: rare, and brief


class HubSpotDestination:
    """Sends an organization's batches to one HubSpot portal."""

    def __init__(self, config: HubSpotConfig, secret: str, context: DestinationContext) -> None:
        self._config = config
        self._token_id = token_id(secret)
        recheck = context.settings.hubspot_daily_recheck_seconds if context.settings else None
        self._api = HubSpotApi(str(config.base_url), secret, context.http, context.timeout,
                               recheck or DAILY_RECHECK_SECONDS, config.time_zone)  # fmt: skip
        self._memory = PortalMemory(context.db, context.org_id) if context.db else None

    @property
    def account(self) -> str:
        """The token's allowance (HubSpot limits each token per ten seconds)."""
        return f"hubspot:{self._config.portal_id}:{self._token_id}"

    def requests_for(self, operations: list[dict[str, Any]]) -> int:
        """A contacts upsert per 100 contacts; for payments, the orders, their line items and
        two association calls; a membership call per list. Lookups and conflicts cost more,
        charged once known (`BatchResult.requests_made`)."""
        kinds = [op["type"] for op in operations]
        contacts_count = kinds.count("contact.upsert")
        payments = kinds.count("payment.upsert")
        lists_count = len({op["listId"] for op in operations if op["type"].startswith("list.")})
        return max(math.ceil(contacts_count / 100) + (4 if payments else 0) + lists_count, 1)

    def prepare(self) -> HubSpotConfig:
        """Check the token with one cheap call, then create the group and properties we write.
        Raises DestinationRefused with HubSpot's reason for a token it rejects."""
        self._api.start(self._api.timeout)
        try:
            details = self._api.call("GET", ACCOUNT_DETAILS)
        except CredentialsRejected as exc:
            raise DestinationRefused(f"HubSpot rejected the access token ({exc.reason})") from None
        except HubSpotError as exc:
            raise DestinationRefused(f"HubSpot refused the token check: {exc.message}") from None
        try:
            schema.provision(self._api)
        except HubSpotError as exc:
            raise DestinationRefused(
                f"HubSpot refused to create our properties: {exc.message}"
            ) from None
        self._config = self._config.model_copy(update={
            "portal_id": details.get("portalId"), "time_zone": details.get("timeZone"),
            "token_id": self._token_id,
        })  # fmt: skip
        with _provisioned_lock:
            _provisioned.add((str(self._config.base_url), self._token_id))
        return self._config

    def send(self, batch: Batch, deadline_seconds: float) -> BatchResult:
        """Contacts, then orders, then list memberships; each operation settled on its own."""
        if self._memory is None:
            raise RuntimeError("the hubspot destination needs the store to remember record ids")
        api = self._api
        api.start(deadline_seconds)
        self._provision_once()
        outcomes = Outcomes()
        by_type: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for index, operation in enumerate(batch.operations):
            by_type.setdefault(operation["type"].split(".")[0], []).append((index, operation))
        written = contacts.ContactsWritten()
        if "contact" in by_type:
            written = contacts.upsert(api, by_type["contact"], outcomes)
            self._memory.contacts_written(written.record_ids, written.conflicts, written.whole)
        if "payment" in by_type:
            orders.upsert(api, self._memory, by_type["payment"], written.record_ids, outcomes)
        if "list" in by_type:
            lists.apply(api, self._memory, self._config.list_name_prefix, by_type["list"],
                        written.record_ids, outcomes)  # fmt: skip
        return BatchResult(outcomes.exceptions, requests_made=api.requests)

    def _provision_once(self) -> None:
        key = (str(self._config.base_url), self._token_id)
        # Held while checking: the other senders of this process wait for the one that checks
        # rather than all checking at once.
        with _provisioned_lock:
            if key in _provisioned:
                return
            try:
                schema.provision(self._api)
            except (DestinationRefused, HubSpotError) as exc:
                raise RetryableDeliveryError(f"HubSpot properties: {exc}") from None
            _provisioned.add(key)
