"""The demo's CRM: receives the `http` destination's signed batches and shows what arrived.

It is a thread server inside the `loke-sync demo` process rather than a blueprint of the
service's web app, because the fidelity view needs two things side by side: LOKE's truth, which
lives in the sandbox's memory in that same process, and what the CRM received. A blueprint would
run in gunicorn's worker processes, see neither, and mix the product's pages with a stand-in for
somebody else's system.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app.delivery.destinations.http import signature
from app.demo import fidelity, page
from app.sandbox.httpserver import LocalServer, Request, Response, json_response
from app.sandbox.server import OrgSnapshot

BASE = "/demo/crm"
BATCHES = f"{BASE}/batches"
STYLESHEET = Path(__file__).resolve().parents[1] / "static" / "dashboard.css"


class DemoCrm(LocalServer):
    """Keeps the newest operation per customer, payment and list member of every organization."""

    def __init__(
        self,
        secret: str,
        truth: Callable[[str], OrgSnapshot],
        org_id: str,
        list_ids: Sequence[str],
        context: Callable[[], dict[str, Any]] | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port)
        self.secret, self.truth, self.org_id = secret, truth, org_id
        self.list_ids = list(list_ids)
        self.context = context or dict  # extra facts for the page (links, sandbox counters)
        self._lock = threading.Lock()
        self.contacts: dict[str, dict[str, dict[str, Any]]] = {}  # org -> customerId -> op
        self.payments: dict[str, dict[str, dict[str, Any]]] = {}  # org -> paymentId -> op
        self.lists: dict[str, dict[str, set[str]]] = {}  # org -> listId -> customer ids
        self.operations: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=15)
        self.list_names: dict[str, str] = {}  # list.remove carries only the id
        self.batches = self.duplicates = self.refused = 0
        self._seen: set[str] = set()

    @property
    def batch_url(self) -> str:
        """Where the `http` destination should POST."""
        return self.url + BATCHES

    def handle(self, request: Request) -> Response:
        """Batches in; the page, its JSON and its stylesheet out."""
        match request.method, request.path:
            case "POST", "/demo/crm/batches":
                return self._receive(request)
            case "GET", "/" | "/demo" | "/demo/crm/":
                return Response(302, headers={"Location": BASE})
            case "GET", "/demo/crm":
                html = page.render(self.report(), self.recent_operations(), self.context())
                return Response(200, html.encode(), {"Content-Type": "text/html; charset=utf-8"})
            case "GET", "/demo/crm/fidelity.json":
                facts = self.context()
                sandbox = {k: facts[k] for k in ("webhooks", "events") if k in facts}
                return json_response(200, {**self.report(), "sandbox": sandbox})
            case "GET", "/demo/crm/dashboard.css":
                return Response(200, STYLESHEET.read_bytes(), {"Content-Type": "text/css"})
        return json_response(404, {"error": {"code": "not_found", "message": request.path}})

    def report(self) -> dict[str, Any]:
        """The fidelity report of the demo organization, with the CRM's own counters."""
        truth = self.truth(self.org_id)  # outside our lock: the sandbox has its own
        with self._lock:
            report = fidelity.compare(
                truth,
                self.contacts.get(self.org_id, {}),
                self.payments.get(self.org_id, {}),
                self.lists.get(self.org_id, {}),
                self.list_ids,
            )
            received = {"batches": self.batches, "duplicates": self.duplicates,
                        "refused": self.refused, "operations": dict(self.operations)}  # fmt: skip
        return {"organizationId": self.org_id, **report, "received": received}

    def recent_operations(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(reversed(self.recent))

    def _receive(self, request: Request) -> Response:
        sent = (request.header("x-signature") or "").encode()
        if not hmac.compare_digest(sent, signature(request.body, self.secret).encode()):
            with self._lock:
                self.refused += 1
            return _error(401, "bad_signature", "X-Signature does not match the body")
        try:
            batch = json.loads(request.body)
            batch_id, org = str(batch["batchId"]), str(batch["organizationId"])
            ops = [op for op in batch["operations"] if isinstance(op, dict)]
        except (ValueError, KeyError, TypeError):
            with self._lock:
                self.refused += 1
            return _error(400, "invalid_batch", "expected {batchId, organizationId, operations}")
        with self._lock:
            if batch_id in self._seen:  # Idempotency-Key: a retried batch is applied once
                self.duplicates += 1
                return json_response(200, {"status": "duplicate"})
            self._seen.add(batch_id)
            self.batches += 1
            for op in ops:
                self._apply(org, op)
        return json_response(200, {"status": "applied", "operations": len(ops)})

    def _apply(self, org: str, op: dict[str, Any]) -> None:
        kind, customer = str(op.get("type")), str(op.get("customerId"))
        if kind == "contact.upsert":
            self.contacts.setdefault(org, {})[customer] = op
        elif kind == "payment.upsert":
            self.payments.setdefault(org, {})[str(op.get("paymentId"))] = op
        elif kind == "list.add":
            self.list_names[str(op.get("listId"))] = str(op.get("listName"))
            self.lists.setdefault(org, {}).setdefault(str(op.get("listId")), set()).add(customer)
        elif kind == "list.remove":
            self.lists.setdefault(org, {}).setdefault(str(op.get("listId")), set()).discard(
                customer
            )
        self.operations[kind] += 1
        list_id = str(op.get("listId") or "")
        detail = op.get("status") or self.list_names.get(list_id, list_id)
        self.recent.append({"at": time.time(), "type": kind, "customerId": customer,
                            "detail": detail})  # fmt: skip


def _error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}})
