"""What the simulated LOKE holds, and how tests and simulations change it.

Organizations, their customers, lists and payments, and webhook subscriptions, behind one lock:
the API (`api`) reads them while serving, tests and the simulation change them at the same time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devtools.sandbox.payloads import default_org_name, iso


@dataclass(frozen=True)
class OrgSnapshot:
    """A consistent copy of one organization's truth, for comparing with a CRM."""

    customers: dict[str, dict[str, Any]]
    payments: dict[str, dict[str, Any]]
    lists: dict[str, tuple[str, frozenset[str]]]  # listId -> (name, member ids)


class LokeState:
    """LOKE's data, and the paging the API serves it with."""

    def __init__(self, page_size: int = 1000, relative_next_page: bool = False) -> None:
        self.page_size = page_size
        self.relative_next_page = relative_next_page  # X-Next-Page as a path, not a full URL
        self._lock = threading.RLock()
        self._orgs: dict[str, str] = {}
        self._customers: dict[str, dict[str, dict[str, Any]]] = {}
        self._lists: dict[str, dict[str, dict[str, Any]]] = {}
        self._payments: dict[str, dict[str, dict[str, Any]]] = {}
        self.subscriptions: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def url(self) -> str:
        """The base URL that absolute X-Next-Page links start with (the server's)."""
        raise NotImplementedError

    def add_org(self, org_id: str, name: str | None = None) -> None:
        """Make an organization reachable by the client (the add-on is installed there)."""
        with self._lock:
            self._orgs[org_id] = name or default_org_name(org_id)

    def org_name(self, org_id: str) -> str:
        with self._lock:
            return self._orgs.get(org_id) or default_org_name(org_id)

    def set_customers(self, org_id: str, customers: Iterable[dict[str, Any]]) -> None:
        """Replace the org's customers (adds the org if unknown)."""
        with self._lock:
            self._orgs.setdefault(org_id, default_org_name(org_id))
            self._customers[org_id] = {c["id"]: dict(c) for c in customers}

    def upsert_customer(self, org_id: str, customer: dict[str, Any]) -> None:
        """Create or replace one customer by id."""
        with self._lock:
            self._orgs.setdefault(org_id, default_org_name(org_id))
            self._customers.setdefault(org_id, {})[customer["id"]] = dict(customer)

    def customer(self, org_id: str, customer_id: str) -> dict[str, Any] | None:
        """A copy of one customer, or None."""
        with self._lock:
            found = self._customers.get(org_id, {}).get(customer_id)
            return json.loads(json.dumps(found)) if found is not None else None

    def set_list(self, org_id: str, list_id: str, name: str, member_ids: Iterable[str]) -> None:
        """Create or replace a customer list and its members (membership has no webhooks)."""
        with self._lock:
            self._orgs.setdefault(org_id, default_org_name(org_id))
            old = self._lists.setdefault(org_id, {}).get(list_id, {"members": {}})
            now = iso(datetime.now().astimezone())
            members = {m: old["members"].get(m, now) for m in member_ids}  # keep addedAt
            created = old.get("createdAt", now)
            self._lists[org_id][list_id] = {"name": name, "createdAt": created, "members": members}

    def set_payments(self, org_id: str, payments: Iterable[dict[str, Any]]) -> None:
        """Replace the org's payments."""
        with self._lock:
            self._orgs.setdefault(org_id, default_org_name(org_id))
            self._payments[org_id] = {p["id"]: dict(p) for p in payments}

    def upsert_payment(self, org_id: str, payment: dict[str, Any]) -> None:
        """Create or replace one payment by id."""
        with self._lock:
            self._payments.setdefault(org_id, {})[payment["id"]] = dict(payment)

    def payment(self, org_id: str, payment_id: str) -> dict[str, Any]:
        """A copy of one payment (KeyError if unknown)."""
        with self._lock:
            found: dict[str, Any] = json.loads(json.dumps(self._payments[org_id][payment_id]))
            return found

    def snapshot(self, org_id: str) -> OrgSnapshot:
        """Copies of the org's customers, payments and list memberships, taken under one lock."""
        with self._lock:
            lists = {
                list_id: (str(stored["name"]), frozenset(stored["members"]))
                for list_id, stored in self._lists.get(org_id, {}).items()
            }
            customers = json.loads(json.dumps(self._customers.get(org_id, {})))
            payments = json.loads(json.dumps(self._payments.get(org_id, {})))
        return OrgSnapshot(customers, payments, lists)

    def secret_for(self, org_id: str) -> str:
        """Secret of the org's single webhook subscription (what LOKE signs deliveries with)."""
        with self._lock:
            found = [s["secret"] for (org, _), s in self.subscriptions.items() if org == org_id]
        if len(found) != 1:
            raise LookupError(f"org {org_id} has {len(found)} webhook subscriptions, not 1")
        return str(found[0])

    def subscribed(self, org_id: str) -> bool:
        with self._lock:
            return any(org == org_id for org, _ in self.subscriptions)
