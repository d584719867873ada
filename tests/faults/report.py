"""The figures of one fault scenario, computed from the fake CRM's final state.

`delivered` counts expected items (contacts, payments, list memberships) whose final state at
the CRM is the truth; `lost` those missing; `stale` those present with an older value;
`duplicates` effects at the CRM that no event caused (an entity or a membership not in the
truth). `reapplied` counts operations the CRM applied again with the same content, and
`resent_batches` batches it saw again under an Idempotency-Key it had applied: at-least-once
delivery allows them (they change nothing) only where a fault lost an answer or a settle. A CRM
that keeps no trace of either (HubSpot's records) leaves them None: not measured.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devtools.crm import FakeCrm
from tests.support.processes import ROOT
from tests.support.streams import Truth

ARTIFACTS = ROOT / "artifacts" / "faults"
WRITTEN: list[FaultReport] = []  # this session's reports, for the table at its end


@dataclass
class Expected:
    """The truth of a scenario: the stream's, plus backfilled customers and list members."""

    truth: Truth
    lists: dict[str, set[str]] = field(default_factory=dict)  # listId -> member customerIds
    refused: frozenset[str] = frozenset()  # customers whose every operation the CRM refuses

    def refuse(self, customers: frozenset[str]) -> None:
        """These customers never reach the CRM: their operations are dead letters instead."""
        self.refused = customers
        for cid in customers:
            self.truth.contacts.pop(cid, None)
            self.truth.statistics.pop(cid, None)
        for pid in [p for p, cid in self.truth.payer.items() if cid in customers]:
            self.truth.payments.pop(pid, None)

    def items(self) -> int:
        members = sum(len(m) for m in self.lists.values())
        return len(self.truth.contacts) + len(self.truth.payments) + members


@dataclass
class FaultReport:
    scenario: str
    fault: str
    sent: int
    accepted: int
    delivered: int
    expected: int
    lost: int
    stale: int
    duplicates: int
    reapplied: int | None  # None: not measured (see the module's docstring)
    resent_batches: int | None  # the CRM saw an Idempotency-Key again, did not apply it twice
    drain_seconds: float  # fault healed and stream settled -> CRM final state right
    total_seconds: float  # first event sent -> CRM final state right
    notes: dict[str, Any] = field(default_factory=dict)

    def write(self) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.scenario}.json"
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        WRITTEN.append(self)
        return path


def compare(expected: Expected, org: str, crm: FakeCrm) -> dict[str, int]:
    """delivered / lost / stale / duplicates / reapplied, read under the CRM's lock."""
    counts = dict.fromkeys(("delivered", "lost", "stale", "duplicates", "reapplied"), 0)

    def tally(found: bool, right: bool) -> None:
        key = "lost" if not found else "delivered" if right else "stale"
        counts[key] += 1

    def check(c: FakeCrm) -> bool:
        truth = expected.truth
        for cid, updated in truth.contacts.items():
            op = c.contacts.get((org, cid))
            stats = truth.statistics.get(cid)
            right = op is not None and op["contact"]["updatedAt"] == updated
            if op is not None and stats is not None:
                got = op.get("statistics") or {}
                right = right and all(got.get(k) == v for k, v in stats.items())
            tally(op is not None, right)
        for pid, status in truth.payments.items():
            op = c.payments.get((org, pid))
            tally(op is not None, op is not None and op["status"] == status)
        for list_id, members in expected.lists.items():
            stored = c.list_members.get((org, list_id), set())
            for member in members:
                tally(member in stored, True)
            counts["duplicates"] += len(stored - members)
        counts["duplicates"] += sum(
            1 for o, cid in c.contacts if o == org and cid not in truth.contacts
        ) + sum(1 for o, pid in c.payments if o == org and pid not in truth.payments)
        counts["reapplied"] = _reapplied(c.batches)
        return True

    crm.wait_for(check, timeout=0)
    return counts


def _reapplied(batches: list[dict[str, Any]]) -> int:
    """Operations applied with exactly the content the CRM already had for that entity."""
    last: dict[tuple[str, str], str] = {}
    again = 0
    for batch in batches:
        for op in batch["operations"]:
            ident = op.get("paymentId") or f"{op.get('listId', '')}/{op['customerId']}"
            key = (op["type"], ident)
            body = json.dumps(op, sort_keys=True)
            again += last.get(key) == body
            last[key] = body
    return again


COLUMNS = ("scenario", "sent", "accepted", "delivered", "lost", "duplicates", "re-sent",
           "re-applied", "drain s")  # fmt: skip


def table(reports: list[FaultReport]) -> str:
    """A Markdown table of the reports, as the README shows it."""
    lines = [
        "| " + " | ".join(COLUMNS) + " | notes |",
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for r in reports:
        notes = ", ".join(f"{k} {v}" for k, v in r.notes.items())
        row = (r.fault, f"{r.sent:,}", f"{r.accepted:,}", f"{r.delivered:,} of {r.expected:,}",
               str(r.lost), str(r.duplicates), _measured(r.resent_batches), _measured(r.reapplied),
               f"{r.drain_seconds:.1f}")  # fmt: skip
        lines.append("| " + " | ".join(row) + f" | {notes} |")
    return "\n".join(lines)


def _measured(value: int | None) -> str:
    return "n/a" if value is None else str(value)
