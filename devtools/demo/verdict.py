"""Does the demo CRM match LOKE, and if not, how far behind is it.

One decision for the page and the status lines: the CRM matches LOKE only when nothing differs,
customers, payments and opted-in list members alike. Otherwise it is catching up, and says by
how much: how many of each are not matching yet, and for how long it has not matched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

# What each difference is about, as `behind` counts it (fidelity reports name them so).
CUSTOMER, PAYMENT, LIST_MEMBER = "customer", "payment", "list member"


def difference(
    record: str, loke_id: str, problem: str, fields: Sequence[str] = ()
) -> dict[str, Any]:
    """One row of the fidelity view's "Not matching yet" table."""
    return {"record": record, "id": loke_id, "problem": problem, "fields": list(fields)}


def member_differences(
    list_name: str, at_loke: frozenset[str] | set[str], in_crm: set[str], crm_name: str
) -> list[dict[str, Any]]:
    """A list's members the CRM lacks, then those it holds that LOKE's list does not (sorted, so
    a page of them stays put between refreshes)."""
    lacking = [difference(LIST_MEMBER, cid, f"not in the {crm_name}'s {list_name!r}")
               for cid in sorted(at_loke - in_crm)]  # fmt: skip
    extra = [difference(LIST_MEMBER, cid, f"in the {crm_name}'s {list_name!r}, not LOKE's")
             for cid in sorted(in_crm - at_loke)]  # fmt: skip
    return lacking + extra


def verdict(differences: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`matches` and `behind` of a fidelity report: every difference counts, list members too
    (a CRM whose lists still wait for their resync does not match LOKE yet)."""
    behind = {"customers": 0, "payments": 0, "listMembers": 0}
    key = {CUSTOMER: "customers", PAYMENT: "payments", LIST_MEMBER: "listMembers"}
    for entry in differences:
        behind[key[entry["record"]]] += 1
    return {"matches": not differences, "behind": behind}


class Convergence:
    """Remembers when the CRM was last seen matching LOKE, so that a report can say for how long
    it has not. It only knows what it is shown: "last matched" is the last report that matched,
    and the demo asks for one every few seconds (status line, page refresh)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._last_match: float | None = None
        self._lock = threading.Lock()  # the page's thread and the status line's both observe

    def observe(self, report: dict[str, Any]) -> dict[str, Any]:
        """`report` with `behind.seconds` (0 when it matches) and `behind.since`: "last match",
        or "start" when it has not matched since the demo started."""
        now = self._clock()
        with self._lock:
            if report["matches"]:
                self._last_match = now
            since = self._last_match if self._last_match is not None else self._started
            origin = "last match" if self._last_match is not None else "start"
        seconds = round(now - since)
        return {**report, "behind": {**report["behind"], "seconds": seconds, "since": origin}}


def status_line(name: str, report: dict[str, Any], webhooks: dict[str, Any], clock: str) -> str:
    """The line the demo prints every few seconds: "<name> matches LOKE" only when everything
    does; otherwise "catching up" with what is not matching yet and for how long."""
    customers, payments = report["customers"], report["payments"]
    members = sum(entry["loke"] for entry in report["lists"])
    fired = f" · webhooks fired {webhooks['fired']:,}"
    if report["matches"]:
        # Only HubSpot has them: customers written without an email another contact holds.
        conflicts = customers.get("conflicts")
        aside = f" ({conflicts:,} email conflicts)" if conflicts else ""
        return (f"{clock} {name} matches LOKE: customers {customers['loke']:,}{aside}"
                f" · payments {payments['loke']:,} · list members {members:,}{fired}")  # fmt: skip
    behind = report["behind"]
    lag = (f"last matched {behind['seconds']} s ago" if behind["since"] == "last match"
           else f"not matched in the {behind['seconds']} s since the start")  # fmt: skip
    counts = (_count(behind["customers"], "customer"), _count(behind["payments"], "payment"),
              _count(behind["listMembers"], "list member"))  # fmt: skip
    return f"{clock} catching up: {', '.join(counts)} not matching yet; {lag}{fired}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
