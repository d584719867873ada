"""The demo's HubSpot (`loke-sync demo --crm hubspot`): the fake HubSpot portal, with a page that
compares what it holds with LOKE's truth.

Like `crm.DemoCrm`, a thread server inside the demo process, so that the page reads LOKE's truth
from the sandbox's memory and the portal's records from the fake's. The API and the page share
one port: HubSpot has no `/demo/` routes, so the page answers those and everything else goes to
the fake, with its token check, its limits and its latency.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any

from devtools.demo import hubspot_fidelity, page
from devtools.demo.verdict import Convergence
from devtools.httpserver import Request, Response
from devtools.hubspot import FakeHubSpot
from devtools.sandbox.payloads import parse_ts
from devtools.sandbox.server import LokeSandbox
from devtools.sandbox.state import OrgSnapshot

PORTAL = "demo-portal"
PER_TEN_SECONDS = 190  # a private app's allowance on HubSpot's paid tiers
LATENCY = (0.1, 0.4)  # seconds: HubSpot's batch APIs are rarely faster, often slower
LIST_PREFIX = "LOKE: "
RECENT = 15
SHOWN = ("loke_customer_id", "firstname", "lastname", "email", "loke_points_balance")
# Contacts the portal had before the venue connected: the café's own people, and a guest
# imported from a spreadsheet long ago, whose email is now a LOKE customer's (see `prepare`).
OWN_CONTACTS = (
    {"firstname": "Priya", "lastname": "Raman", "email": "priya@harbourcafe.example"},
    {"firstname": "Tom", "lastname": "Hale", "email": "accounts@harbourcafe.example"},
)


class DemoHubSpot(FakeHubSpot):
    """The fake HubSpot portal of one demo organization, with its page and fidelity report."""

    name = "HubSpot"  # as the page and the status lines call it: "HubSpot matches LOKE"

    def __init__(
        self,
        truth: Callable[[str], OrgSnapshot],
        org_id: str,
        list_ids: Sequence[str],
        context: Callable[[], dict[str, Any]] | None = None,
        port: int = 0,
    ) -> None:
        self.token = secrets.token_urlsafe(24)  # the portal's private app token
        super().__init__({self.token: PORTAL}, per_ten_seconds=PER_TEN_SECONDS, latency=LATENCY,
                         port=port)  # fmt: skip
        self.keep_alive = True  # as HubSpot's API: the service's session reuses its connections
        self.truth, self.org_id = truth, org_id
        self.list_ids = list(list_ids)
        self.context = context or dict  # extra facts for the page (links, sandbox counters)
        self.convergence = Convergence()  # since when it has not matched

    def prepare(self, sandbox: LokeSandbox) -> None:
        """Make the portal and LOKE what a real venue connects: a portal with contacts of its
        own, one of them holding a LOKE customer's email (the service adopts it rather than make
        a second contact), and two LOKE customers sharing an email (a couple with one address:
        HubSpot keeps an email on one contact, so the other is an email conflict). Call before
        the organization is connected, so the backfill meets all three."""
        for properties in OWN_CONTACTS:
            self.seed_contact(dict(properties), PORTAL)
        customers = list(sandbox.snapshot(self.org_id).customers.values())
        if len(customers) >= 3:  # the demo's smallest organizations get neither
            imported = customers[-1]
            self.seed_contact({"firstname": imported.get("firstName") or "",
                               "email": imported["email"]}, PORTAL)  # fmt: skip
            sandbox.upsert_customer(self.org_id, {**customers[1], "email": customers[0]["email"]})

    def destination(self) -> dict[str, Any]:
        """The `hubspot` destination the demo organization is connected with."""
        return {"type": "hubspot", "accessToken": self.token, "baseUrl": self.url,
                "requestsPerTenSeconds": PER_TEN_SECONDS, "listNamePrefix": LIST_PREFIX,
                "maxConcurrentRequests": 4}  # fmt: skip

    def handle(self, request: Request) -> Response:
        """The page, its JSON and its stylesheet; HubSpot's API for everything else."""
        shown = page.answer(
            request, self.report, self.recent_contacts, self.context, "demo_hubspot.html"
        )
        return shown or super().handle(request)

    def report(self) -> dict[str, Any]:
        """The fidelity report of the demo organization, with the portal's traffic and how long
        it has not matched."""
        truth = self.truth(self.org_id)  # outside our lock: the sandbox has its own
        with self._lock:  # one consistent look at the portal (the lock is re-entrant)
            held = hubspot_fidelity.Holdings(
                self.contacts(PORTAL),
                self.orders(PORTAL),
                self.associations("orders", "contacts", PORTAL),
                {
                    name: self.members(list_id, PORTAL)
                    for name, list_id in self.lists(PORTAL).items()
                },
            )
            traffic, busiest = self.requests.as_json(), self.max_in_window
        report = hubspot_fidelity.compare(truth, held, self.list_ids, LIST_PREFIX)
        traffic |= {"maxInWindow": busiest, "allowance": PER_TEN_SECONDS}
        full = {"organizationId": self.org_id, "crm": "hubspot", **report, "received": traffic}
        return self.convergence.observe(full)

    def recent_contacts(self) -> list[dict[str, Any]]:
        """The contacts written last, newest first."""
        with self._lock:
            held = self._account(PORTAL).records.all("contacts")
            newest = sorted(held, key=lambda record: record.updated_at, reverse=True)[:RECENT]
            return [{"at": parse_ts(r.updated_at).timestamp(), "id": r.id,
                     **{name: r.properties.get(name) for name in SHOWN}}
                    for r in newest]  # fmt: skip
