"""The demo's CRM: the fake CRM, with a page that compares what it holds with LOKE's truth.

It is a thread server inside the `loke-sync demo` process rather than a blueprint of the
service's web app, because the fidelity view needs two things side by side: LOKE's truth, which
lives in the sandbox's memory in that same process, and what the CRM received. A blueprint would
run in gunicorn's worker processes, see neither, and mix the product's pages with a stand-in for
somebody else's system.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from devtools.crm import FakeCrm
from devtools.demo import fidelity, page
from devtools.demo.verdict import Convergence
from devtools.httpserver import Request, Response
from devtools.sandbox.state import OrgSnapshot

BATCHES = f"{page.BASE}/batches"


class DemoCrm(FakeCrm):
    """The fake CRM of one demo organization, with its page and its fidelity report."""

    name = "CRM"  # as the page and the status lines call it: "CRM matches LOKE"

    def __init__(
        self,
        secret: str,
        truth: Callable[[str], OrgSnapshot],
        org_id: str,
        list_ids: Sequence[str],
        context: Callable[[], dict[str, Any]] | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(secret, port=port)
        self.truth, self.org_id = truth, org_id
        self.list_ids = list(list_ids)
        self.context = context or dict  # extra facts for the page (links, sandbox counters)
        self.convergence = Convergence()  # since when it has not matched

    @property
    def batch_url(self) -> str:
        """Where the `http` destination should POST."""
        return self.url + BATCHES

    def destination(self) -> dict[str, Any]:
        """The `http` destination the demo organization is connected with."""
        return {"type": "http", "url": self.batch_url, "secret": self.secret, "batchSize": 200,
                "maxRequestsPerSecond": 50}  # fmt: skip

    def handle(self, request: Request) -> Response:
        """Batches in; the page, its JSON and its stylesheet out."""
        shown = page.answer(request, self.report, self.recent_operations, self.context)
        return shown or super().handle(request)

    def report(self) -> dict[str, Any]:
        """The fidelity report of the demo organization, with the CRM's own counters and how
        long it has not matched."""
        truth = self.truth(self.org_id)  # outside our lock: the sandbox has its own
        org = self.org_id
        with self._lock:
            members = {list_id: set(held) for (o, list_id), held in self.list_members.items()
                       if o == org}  # fmt: skip
            report = fidelity.compare(
                truth,
                {cid: op for (o, cid), op in self.contacts.items() if o == org},
                {pid: op for (o, pid), op in self.payments.items() if o == org},
                members,
                self.list_ids,
            )
            refused = sum(1 for _, status, _ in self.answered if status in (400, 401))
            received = {"batches": len(self.batches), "duplicates": len(self.duplicate_batch_ids),
                        "refused": refused, "operations": dict(self.counts(org).ops)}  # fmt: skip
        return self.convergence.observe({"organizationId": org, **report, "received": received})

    def recent_operations(self) -> list[dict[str, Any]]:
        """The last operations applied, newest first."""
        with self._lock:
            return list(reversed(self.recent))
