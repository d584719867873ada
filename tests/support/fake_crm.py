"""A CRM that records the service's `http` destination batches and checks its guarantees.

The contract promises per-customer monotonic state, no concurrent batches for one customer and no
`completed` after `refunded`; those are only observable at the receiving end, so this fake records
violations (`regressions`, `overlaps`, `protocol_errors`) for tests to assert empty.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import FakeServer, Request, Response, json_response, parse_ts

Key = tuple[str, str]  # (organizationId, customerId | paymentId | listId)
StatsKey = tuple[datetime, float]

_OP_FIELDS: dict[str, tuple[str, ...]] = {
    "contact.upsert": ("customerId", "contact", "statistics"),
    "payment.upsert": (
        "paymentId",
        "customerId",
        "status",
        "total",
        "currency",
        "completedAt",
        "refundedAt",
        "locationId",
        "items",
    ),
    "list.add": ("listId", "listName", "customerId"),
    "list.remove": ("listId", "customerId"),
}
_LAST_ACTIVITY = (
    ("lastPointsEarnedAt", "lastPointsEarned"),
    ("lastPointsRedeemedAt", "lastPointsRedeemed"),
    ("lastSpentAt", "lastSpend"),
)


def signature(body: bytes, secret: str) -> str:
    """The `X-Signature` value the service must send for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def stats_key(stats: dict[str, Any]) -> StatsKey:
    """Orders statistics: latest activity first, then lifetime points (both only grow)."""
    latest = max(parse_ts(stats.get(new, stats.get(old))) for new, old in _LAST_ACTIVITY)
    points = (stats.get("totalPointsEarned") or 0) + (stats.get("totalPointsRedeemed") or 0)
    return latest, float(points)


def check_batch(batch: Any, request: Request) -> list[str]:
    """Wire-format violations of one batch (empty when it follows the contract)."""
    if not (request.header("content-type") or "").startswith("application/json"):
        return [f"Content-Type is {request.header('content-type')!r}"]
    if not isinstance(batch, dict):
        return ["body is not a JSON object"]
    problems = [
        f"missing {name}" for name in ("batchId", "organizationId", "sentAt") if not batch.get(name)
    ]
    if request.header("idempotency-key") != batch.get("batchId"):
        problems.append(f"Idempotency-Key {request.header('idempotency-key')!r} != batchId")
    ops = batch.get("operations")
    if not isinstance(ops, list):
        return [*problems, "operations is not a list"]
    for index, op in enumerate(ops):
        where = f"batch {batch.get('batchId')} op {index}"
        if not isinstance(op, dict) or op.get("type") not in _OP_FIELDS:
            problems.append(f"{where}: unknown operation {op!r}")
            continue
        missing = [name for name in _OP_FIELDS[op["type"]] if name not in op]
        if missing:
            problems.append(f"{where}: {op['type']} lacks {missing}")
        if not isinstance(op.get("customerId"), str) or not op["customerId"]:
            problems.append(f"{where}: customerId must be a non-empty string")
        if op["type"] == "payment.upsert" and op.get("status") not in ("completed", "refunded"):
            problems.append(f"{where}: payment status {op.get('status')!r}")
        if op["type"] == "contact.upsert" and not isinstance(op.get("contact"), dict):
            problems.append(f"{where}: contact is not an object")
    return problems


class RecordingCrm(FakeServer):
    """Receives batches on any path, answers as programmed, records what a 2xx applied."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret
        self._lock = threading.RLock()
        self._in_flight: dict[Key, list[str]] = {}  # customer -> batchIds being handled
        self.batches: list[dict[str, Any]] = []
        self.contacts: dict[Key, dict[str, Any]] = {}
        self.payments: dict[Key, dict[str, Any]] = {}
        self.list_members: dict[Key, set[str]] = {}
        self.list_names: dict[Key, str] = {}
        self.duplicate_batch_ids: list[str] = []
        self.regressions: list[str] = []
        self.overlaps: list[str] = []
        self.protocol_errors: list[str] = []
        self.answered: list[tuple[float, int, int]] = []  # (time.monotonic(), status, ops)
        self.reset()

    # -- behaviour, set from tests while running -------------------------------------------
    def reset(self) -> None:
        """Forget recordings and behaviours (in-flight tracking stays: requests are real)."""
        with self._lock:
            self.batches.clear()
            self.answered.clear()
            self.contacts.clear()
            self.payments.clear()
            self.list_members.clear()
            self.list_names.clear()
            for recording in (self.duplicate_batch_ids, self.regressions, self.overlaps):
                recording.clear()
            self.protocol_errors.clear()
            self.operation_count = 0
            self.bad_signatures = 0
            self._seen_batch_ids: set[str] = set()
            self._max_updated: dict[Key, datetime] = {}
            self._max_stats: dict[Key, StatsKey] = {}
            self._refunded: set[Key] = set()
            self._fail_until = 0.0
            self._fail_until_status = 503
            self._fail_next: list[tuple[int, str | None]] = []
            self._rejected: dict[str, int] = {}
            self._delay = 0.0

    def fail_for(self, seconds: float, status: int = 503) -> None:
        """Answer `status` to every batch for the next `seconds` (an outage)."""
        with self._lock:
            self._fail_until = time.monotonic() + seconds
            self._fail_until_status = status

    def fail_next(self, n: int, status: int = 429, retry_after: str | None = "1") -> None:
        """Answer the next `n` batches with `status` (and `Retry-After` when given)."""
        with self._lock:
            self._fail_next.extend([(status, retry_after)] * n)

    def reject_customer(self, customer_id: str, status: int = 400) -> None:
        """Any batch carrying `customer_id` gets `status` with a JSON error (a poison record)."""
        with self._lock:
            self._rejected[customer_id] = status

    def delay(self, seconds: float) -> None:
        """Sleep this long before answering each batch (slow CRM; makes overlaps observable)."""
        with self._lock:
            self._delay = seconds

    def wait_for(
        self, predicate: Callable[[RecordingCrm], bool], timeout: float, interval: float = 0.02
    ) -> bool:
        """Poll `predicate(self)` until true; it runs under the lock (so it may iterate the
        recordings safely) and therefore must not send requests to this CRM."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if predicate(self):
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    def in_flight(self) -> dict[Key, list[str]]:
        """Customers whose batches are being handled right now, with those batchIds."""
        with self._lock:
            return {key: list(ids) for key, ids in self._in_flight.items()}

    def failing(self) -> bool:
        """Whether a `fail_for` outage is still on."""
        with self._lock:
            return time.monotonic() < self._fail_until

    def violations(self) -> list[str]:
        """Every recorded broken guarantee, for a single `assert crm.violations() == []`."""
        with self._lock:
            return [*self.regressions, *self.overlaps, *self.protocol_errors, *self.server_errors]

    # -- serving ---------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """Verify, check the wire format, track in-flight customers, then answer as programmed."""
        if not hmac.compare_digest(
            (request.header("x-signature") or "").encode(),
            signature(request.body, self.secret).encode(),
        ):
            with self._lock:
                self.bad_signatures += 1
                self.answered.append((time.monotonic(), 401, 0))
            return _error(401, "bad_signature", "X-Signature does not match the body")
        try:
            batch = json.loads(request.body)
        except ValueError:
            batch = None
        problems = check_batch(batch, request)
        if problems:
            with self._lock:
                self.protocol_errors.extend(problems)
                self.answered.append((time.monotonic(), 400, 0))
            return _error(400, "invalid_batch", "; ".join(problems))
        batch_id: str = batch["batchId"]
        org: str = batch["organizationId"]
        ops: list[dict[str, Any]] = batch["operations"]
        customers = {(org, op["customerId"]) for op in ops}
        with self._lock:
            for key in sorted(customers):
                for other in self._in_flight.get(key, []):
                    self.overlaps.append(
                        f"batch {batch_id} carries customer {key[1]} (org {key[0]}) while"
                        f" batch {other} carrying it is still unanswered"
                    )
                self._in_flight.setdefault(key, []).append(batch_id)
            delay = self._delay
        try:
            if delay > 0:
                time.sleep(delay)
            with self._lock:
                response = self._answer(batch, request.header("idempotency-key") or batch_id)
                self.answered.append((time.monotonic(), response.status, len(ops)))
                return response
        finally:
            with self._lock:
                for key in customers:
                    self._in_flight[key].remove(batch_id)
                    if not self._in_flight[key]:
                        del self._in_flight[key]

    def _answer(self, batch: dict[str, Any], idempotency_key: str) -> Response:
        if time.monotonic() < self._fail_until:
            return _error(self._fail_until_status, "unavailable", "CRM outage (fail_for)")
        if self._fail_next:
            status, retry_after = self._fail_next.pop(0)
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            return _error(status, "throttled", "programmed failure (fail_next)", headers)
        for op in batch["operations"]:
            if op["customerId"] in self._rejected:
                message = f"customer {op['customerId']} rejected"
                return _error(self._rejected[op["customerId"]], "rejected", message)
        if idempotency_key in self._seen_batch_ids:
            self.duplicate_batch_ids.append(idempotency_key)
            return json_response(200, {"status": "duplicate"})  # idempotent: not applied again
        self._seen_batch_ids.add(idempotency_key)
        self._apply(batch)
        return json_response(200, {"status": "applied", "operations": len(batch["operations"])})

    def _apply(self, batch: dict[str, Any]) -> None:
        org, batch_id = batch["organizationId"], batch["batchId"]
        for op in batch["operations"]:
            kind, customer = op["type"], (org, op["customerId"])
            if kind == "contact.upsert":
                self._check_contact(customer, op, batch_id)
                self.contacts[customer] = op
            elif kind == "payment.upsert":
                payment = (org, op["paymentId"])
                if op["status"] == "completed" and payment in self._refunded:
                    self.regressions.append(
                        f"batch {batch_id}: payment {payment[1]} (org {org}) delivered as"
                        " completed after it was delivered as refunded"
                    )
                if op["status"] == "refunded":
                    self._refunded.add(payment)
                self.payments[payment] = op
            elif kind == "list.add":
                self.list_members.setdefault((org, op["listId"]), set()).add(op["customerId"])
                self.list_names[(org, op["listId"])] = op["listName"]
            else:
                self.list_members.setdefault((org, op["listId"]), set()).discard(op["customerId"])
        self.operation_count += len(batch["operations"])
        self.batches.append(batch)

    def _check_contact(self, customer: Key, op: dict[str, Any], batch_id: str) -> None:
        who = f"batch {batch_id}: customer {customer[1]} (org {customer[0]})"
        updated = parse_ts(op["contact"].get("updatedAt"))
        applied = self._max_updated.get(customer)
        if applied is not None and updated < applied:
            self.regressions.append(
                f"{who}: contact.updatedAt {updated.isoformat()} older than applied"
                f" {applied.isoformat()}"
            )
        self._max_updated[customer] = max(updated, applied or updated)
        if isinstance(op["statistics"], dict):
            stats = stats_key(op["statistics"])
            applied_stats = self._max_stats.get(customer)
            if applied_stats is not None and stats < applied_stats:
                self.regressions.append(
                    f"{who}: statistics {stats[0].isoformat()}/{stats[1]:g} older than applied"
                    f" {applied_stats[0].isoformat()}/{applied_stats[1]:g}"
                )
            self._max_stats[customer] = max(stats, applied_stats or stats)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}}, headers)
