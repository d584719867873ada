"""What the contract promises the CRM, checked where only the CRM can see it: the wire format of
each batch, and that no customer's state, statistics or payment goes backwards."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from devtools.httpserver import Request
from devtools.sandbox.payloads import parse_ts

Key = tuple[str, str]  # (organizationId, customerId | paymentId | listId)
StatsKey = tuple[datetime, float]

OPERATION_FIELDS: dict[str, tuple[str, ...]] = {
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
    """The `X-Signature` the service must send with `body`: computed here independently of
    the service's own code, so a wrong signature there cannot go unseen."""
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
        if not isinstance(op, dict) or op.get("type") not in OPERATION_FIELDS:
            problems.append(f"{where}: unknown operation {op!r}")
            continue
        missing = [name for name in OPERATION_FIELDS[op["type"]] if name not in op]
        if missing:
            problems.append(f"{where}: {op['type']} lacks {missing}")
        if not isinstance(op.get("customerId"), str) or not op["customerId"]:
            problems.append(f"{where}: customerId must be a non-empty string")
        if op["type"] == "payment.upsert" and op.get("status") not in ("completed", "refunded"):
            problems.append(f"{where}: payment status {op.get('status')!r}")
        if op["type"] == "contact.upsert" and not isinstance(op.get("contact"), dict):
            problems.append(f"{where}: contact is not an object")
    return problems


class Monotonic:
    """Remembers the newest state applied per customer and payment, and says what went back."""

    def __init__(self) -> None:
        self._updated: dict[Key, datetime] = {}
        self._stats: dict[Key, StatsKey] = {}
        self._refunded: set[Key] = set()

    def regressions(self, org: str, op: dict[str, Any], batch_id: str) -> list[str]:
        """What applying `op` (already shape-checked) would move backwards; remembers it."""
        if op["type"] == "contact.upsert":
            return self._contact((org, op["customerId"]), op, batch_id)
        if op["type"] == "payment.upsert":
            payment = (org, op["paymentId"])
            if op["status"] == "refunded":
                self._refunded.add(payment)
            elif payment in self._refunded:
                return [f"batch {batch_id}: payment {payment[1]} (org {org}) delivered as"
                        " completed after it was delivered as refunded"]  # fmt: skip
        return []

    def _contact(self, customer: Key, op: dict[str, Any], batch_id: str) -> list[str]:
        found = []
        who = f"batch {batch_id}: customer {customer[1]} (org {customer[0]})"
        updated = parse_ts(op["contact"].get("updatedAt"))
        applied = self._updated.get(customer)
        if applied is not None and updated < applied:
            found.append(f"{who}: contact.updatedAt {updated.isoformat()} older than applied"
                         f" {applied.isoformat()}")  # fmt: skip
        self._updated[customer] = max(updated, applied or updated)
        if isinstance(op["statistics"], dict):
            stats = stats_key(op["statistics"])
            applied_stats = self._stats.get(customer)
            if applied_stats is not None and stats < applied_stats:
                found.append(
                    f"{who}: statistics {stats[0].isoformat()}/{stats[1]:g} older than applied"
                    f" {applied_stats[0].isoformat()}/{applied_stats[1]:g}"
                )
            self._stats[customer] = max(stats, applied_stats or stats)
        return found
