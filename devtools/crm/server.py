"""The fake CRM's server: answers batches as programmed and records what a 2xx applied.

Full mode (tests, the demo) keeps every batch and the newest operation per customer, payment and
list member, and records every broken guarantee (`violations`): a customer in two unanswered
batches, a state or statistics going backwards, `completed` after `refunded`, a malformed batch.
Counting mode (benches) checks the signature and the batch's shape only, and counts.

Like a real CRM it can take its time (`delay`), allow so many requests per window to the whole
account (`limit`, then 429 with Retry-After), refuse or defer single records inside a batch
(`refuse_records`, `defer_records`: a 2xx naming them in `results`), be down (`fail_for`), and
trickle its answer (`trickle`).
"""

from __future__ import annotations

import hmac
import json
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devtools.crm.checks import Key, Monotonic, check_batch, signature
from devtools.httpserver import LocalServer, Request, Response, json_response

RECENT = 15  # operations kept for a page to show


@dataclass
class OrgCounts:
    """What the CRM applied for one organization since its counts were last reset."""

    ops: Counter[str] = field(default_factory=Counter)  # by operation type
    upserted: Counter[str] = field(default_factory=Counter)  # customerId -> contact.upserts
    added: Counter[str] = field(default_factory=Counter)  # customerId -> list.adds
    removed: Counter[str] = field(default_factory=Counter)  # customerId -> list.removes
    answers: list[tuple[float, int]] = field(default_factory=list)  # (epoch, ops) per batch
    duplicates: int = 0  # batches sent again with an Idempotency-Key already applied

    @property
    def batches(self) -> int:
        """Batches applied."""
        return len(self.answers)

    @property
    def last_answer(self) -> float:
        """The epoch time of the last applied batch's answer (0 before any)."""
        return self.answers[-1][0] if self.answers else 0.0

    def as_json(self, full: bool) -> dict[str, Any]:
        """The counts as `GET /stats?org=` serves them: customers upserted, and with `full`
        {upserts a customer got: customers}, operations by type, answers and duplicates."""
        if not full:
            return {"customers": len(self.upserted)}
        return {
            "customers": len(self.upserted),
            "per_customer": dict(Counter(self.upserted.values())),
            "operations": dict(self.ops),
            "answers": self.answers,
            "duplicates": self.duplicates,
        }


class FakeCrm(LocalServer):
    """Receives batches on any path, answers as programmed, records what a 2xx applied."""

    def __init__(self, secret: str, counting: bool = False, port: int = 0) -> None:
        super().__init__(port)
        self.secret = secret
        self.counting = counting
        self._lock = threading.RLock()
        self._in_flight: dict[Key, list[str]] = {}  # customer -> batchIds being handled
        self.reset()

    # -- behaviour, set by tests while running -----------------------------------------------
    def reset(self) -> None:
        """Forget recordings and behaviours (in-flight tracking stays: requests are real)."""
        with self._lock:
            self.batches: list[dict[str, Any]] = []
            self.contacts: dict[Key, dict[str, Any]] = {}
            self.payments: dict[Key, dict[str, Any]] = {}
            self.list_members: dict[Key, set[str]] = {}
            self.list_names: dict[Key, str] = {}
            self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
            self.duplicate_batch_ids: list[str] = []
            self.regressions: list[str] = []
            self.overlaps: list[str] = []
            self.protocol_errors: list[str] = []
            self.answered: list[tuple[float, int, int]] = []  # (time.monotonic(), status, ops)
            self.keys_sent: list[str] = []  # the Idempotency-Key of every batch, as it came
            self.arrived: list[float] = []  # time.monotonic() each signed batch arrived
            self.operation_count = 0
            self.bad_signatures = 0
            self.throttled = 0  # 429s answered for the account's limit
            self.refused_records: list[tuple[str, str]] = []  # (organizationId, customerId)
            self.deferred_records: list[tuple[str, str]] = []
            self._counts: dict[str, OrgCounts] = {}
            self._seen_batch_ids: set[str] = set()
            self._monotonic = Monotonic()
            self._fail_until = 0.0
            self._fail_until_status = 503
            self._fail_next: list[tuple[int, str | None]] = []
            self._rejected: dict[str, int] = {}
            self._refuse: dict[str, str] = {}  # customerId -> reason
            self._defer: Counter[str] = Counter()  # customerId -> "retry" answers left
            self._delay = (0.0, 0.0)
            self._limit: tuple[int, float] | None = None
            self._window: deque[float] = deque()  # times of the requests the limit counts
            self._trickle = 0.0
            self._rng = random.Random(0)  # latency jitter, not a secret (nosec B311)

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

    def delay(self, seconds: float, up_to: float | None = None) -> None:
        """Take this long to answer each batch (or a time drawn between `seconds` and `up_to`):
        a real CRM's latency; it also makes overlaps visible."""
        with self._lock:
            self._delay = (seconds, seconds if up_to is None else up_to)

    def limit(self, requests: int, per_seconds: float) -> None:
        """Allow at most `requests` batches in any `per_seconds` (the whole account); beyond
        that answer 429 with Retry-After, as a rate-limited CRM does."""
        with self._lock:
            self._limit = (requests, per_seconds)
            self._window.clear()

    def refuse_records(self, customer_ids: set[str], reason: str = "invalid record") -> None:
        """Operations for these customers are refused one by one, inside a 2xx (`results`)."""
        with self._lock:
            self._refuse.update(dict.fromkeys(customer_ids, reason))

    def defer_records(self, customer_ids: set[str], times: int = 1) -> None:
        """Operations for these customers are answered "retry" the next `times` times."""
        with self._lock:
            for customer_id in customer_ids:
                self._defer[customer_id] = times

    def trickle(self, seconds: float) -> None:
        """Send each answer's body a byte at a time over `seconds` (0: at once)."""
        with self._lock:
            self._trickle = seconds

    # -- what it holds -------------------------------------------------------------------------
    def wait_for(
        self, predicate: Callable[[FakeCrm], bool], timeout: float, interval: float = 0.02
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

    def counts(self, org: str) -> OrgCounts:
        """What was applied for `org` since its counts were last reset (a copy)."""
        with self._lock:
            held = self._counts.get(org, OrgCounts())
            return OrgCounts(
                Counter(held.ops),
                Counter(held.upserted),
                Counter(held.added),
                Counter(held.removed),
                list(held.answers),
                held.duplicates,
            )

    def reset_counts(self, org: str) -> None:
        """Start counting `org` afresh (what it holds stays)."""
        with self._lock:
            self._counts[org] = OrgCounts()

    def members(self, org: str, list_id: str) -> set[str]:
        """The customers the CRM holds in a list (a copy)."""
        with self._lock:
            return set(self.list_members.get((org, list_id), ()))

    # -- serving -------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """POST on any path: a batch. GET /healthz, and GET /stats?org=[&full=1] for a bench."""
        if request.method == "POST":
            return self._receive(request)
        if request.path == "/healthz":
            return json_response(200, {"status": "ok"})
        if request.path == "/stats":
            counts = self.counts(request.param("org") or "").as_json(request.param("full") == "1")
            return json_response(200, {**counts, "errors": self._errors()})
        return _error(404, "not_found", request.path)

    def _errors(self) -> list[str]:
        with self._lock:
            bad = ["bad signature"] * self.bad_signatures
            return [*bad, *self.protocol_errors, *self.server_errors]

    def _receive(self, request: Request) -> Response:
        """Verify, check the shape, track in-flight customers, then answer as programmed."""
        expected = signature(request.body, self.secret).encode()
        if not hmac.compare_digest((request.header("x-signature") or "").encode(), expected):
            with self._lock:
                self.bad_signatures += 1
                self.answered.append((time.monotonic(), 401, 0))
            return _error(401, "bad_signature", "X-Signature does not match the body")
        try:
            batch = json.loads(request.body)
        except ValueError:
            batch = None
        problems = _shape_problems(batch) if self.counting else check_batch(batch, request)
        if problems:
            with self._lock:
                self.protocol_errors.extend(problems)
                self.answered.append((time.monotonic(), 400, 0))
            return _error(400, "invalid_batch", "; ".join(problems))
        batch_id: str = batch["batchId"]
        ops: list[dict[str, Any]] = batch["operations"]
        with self._lock:
            self.keys_sent.append(request.header("idempotency-key") or "")
            self.arrived.append(time.monotonic())
        customers = set() if self.counting else {(batch["organizationId"], op["customerId"])
                                                 for op in ops}  # fmt: skip
        with self._lock:
            for key in sorted(customers):
                for other in self._in_flight.get(key, []):
                    self.overlaps.append(
                        f"batch {batch_id} carries customer {key[1]} (org {key[0]}) while"
                        f" batch {other} carrying it is still unanswered"
                    )
                self._in_flight.setdefault(key, []).append(batch_id)
            low, high = self._delay
            delay = self._rng.uniform(low, high) if high > low else low

        def release() -> None:
            with self._lock:
                for key in customers:
                    self._in_flight[key].remove(batch_id)
                    if not self._in_flight[key]:
                        del self._in_flight[key]

        try:
            if delay > 0:
                time.sleep(delay)
            with self._lock:
                response = self._answer(batch, request.header("idempotency-key") or batch_id)
                self.answered.append((time.monotonic(), response.status, len(ops)))
        except BaseException:
            release()
            raise
        # In flight until the whole answer is out: a trickled answer keeps the batch unanswered.
        response.after = release
        return response

    def _answer(self, batch: dict[str, Any], idempotency_key: str) -> Response:
        answer = self._programmed(batch, idempotency_key)
        answer.trickle_seconds = self._trickle
        return answer

    def _programmed(self, batch: dict[str, Any], idempotency_key: str) -> Response:
        if (wait := self._over_limit()) is not None:
            self.throttled += 1
            retry = {"Retry-After": str(math.ceil(wait))}
            return _error(429, "rate_limited", "over the account's limit (limit)", retry)
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
            self._counts.setdefault(batch["organizationId"], OrgCounts()).duplicates += 1
            return json_response(200, {"status": "duplicate"})  # idempotent: not applied again
        self._seen_batch_ids.add(idempotency_key)
        results = self._record_results(batch)
        self._apply(batch, skip={r["index"] for r in results})
        answer: dict[str, Any] = {"status": "applied", "operations": len(batch["operations"])}
        return json_response(200, {**answer, "results": results} if results else answer)

    def _over_limit(self) -> float | None:
        """Seconds until the account may send again, if it is over its limit now."""
        if self._limit is None:
            return None
        requests, per_seconds = self._limit
        now = time.monotonic()
        while self._window and self._window[0] <= now - per_seconds:
            self._window.popleft()
        if len(self._window) >= requests:
            return self._window[0] + per_seconds - now
        self._window.append(now)
        return None

    def _record_results(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """The operations refused or deferred one by one (`results` of the 2xx)."""
        results = []
        org = batch["organizationId"]
        for index, op in enumerate(batch["operations"]):
            customer = op["customerId"]
            if customer in self._refuse:
                self.refused_records.append((org, customer))
                results.append({"index": index, "status": "rejected",
                                "reason": self._refuse[customer]})  # fmt: skip
            elif self._defer[customer] > 0:
                self._defer[customer] -= 1
                self.deferred_records.append((org, customer))
                results.append({"index": index, "status": "retry", "reason": "busy, later"})
        return results

    def _apply(self, batch: dict[str, Any], skip: set[int] | None = None) -> None:
        org, batch_id = batch["organizationId"], batch["batchId"]
        ops = [op for i, op in enumerate(batch["operations"]) if not skip or i not in skip]
        counts = self._counts.setdefault(org, OrgCounts())
        for op in ops:
            kind, customer = op["type"], op["customerId"]
            counts.ops[kind] += 1
            if kind == "contact.upsert":
                counts.upserted[customer] += 1
            elif kind == "list.add":
                counts.added[customer] += 1
                self.list_members.setdefault((org, op["listId"]), set()).add(customer)
            elif kind == "list.remove":
                counts.removed[customer] += 1
                self.list_members.setdefault((org, op["listId"]), set()).discard(customer)
            if not self.counting:
                self._keep(org, op, batch_id)
        if not self.counting:
            self.batches.append({**batch, "operations": ops} if skip else batch)
        self.operation_count += len(ops)
        counts.answers.append((time.time(), len(ops)))

    def _keep(self, org: str, op: dict[str, Any], batch_id: str) -> None:
        """Full mode: the newest operation per entity, the checks, the recent operations."""
        self.regressions.extend(self._monotonic.regressions(org, op, batch_id))
        kind = op["type"]
        if kind == "contact.upsert":
            self.contacts[(org, op["customerId"])] = op
        elif kind == "payment.upsert":
            self.payments[(org, op["paymentId"])] = op
        elif kind == "list.add":
            self.list_names[(org, op["listId"])] = op["listName"]
        list_id = str(op.get("listId") or "")
        detail = op.get("status") or self.list_names.get((org, list_id), list_id)
        self.recent.append({"at": time.time(), "type": kind, "customerId": op["customerId"],
                            "detail": detail})  # fmt: skip


def _shape_problems(batch: Any) -> list[str]:
    """Counting mode's check: a batch with an id, an organization and typed operations."""
    try:
        ok = bool(batch["batchId"]) and bool(batch["organizationId"])
        ok = ok and all(op["type"] and op["customerId"] for op in batch["operations"])
    except (KeyError, TypeError):
        ok = False
    return [] if ok else [f"malformed batch: {str(batch)[:200]}"]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}}, headers)
