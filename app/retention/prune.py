"""Pruning what retention no longer keeps: every rule, a bounded chunk per transaction, within
a time budget (beat runs it every RETENTION_INTERVAL_SECONDS; the task sends itself again when
a first run on a big table has more left)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field

from prometheus_client import Counter

from app.core.services import Services
from app.retention.rules import RULES
from app.store.db import utcnow

log = logging.getLogger(__name__)

# A chunk is one statement and one transaction: short enough that a first run over months of
# rows never holds its locks (or, on SQLite, the one write lock) for long.
ROWS_PER_STATEMENT = 5000
# Well inside the tasks' soft time limit (120 s); what is left goes to a task sent at once.
TIME_BUDGET_SECONDS = 60.0

PRUNED = Counter(
    "loke_sync_retention_pruned",
    "Rows retention deleted (event_bodies: bodies it cleared), by kind",
    ["kind"],
)


@dataclass
class Pruned:
    """What one run pruned, by kind; `more` when it ran out of time with rows left."""

    pruned: dict[str, int] = field(default_factory=lambda: {rule.kind: 0 for rule in RULES})
    more: bool = False


def prune(
    services: Services,
    rows_per_statement: int | None = None,
    time_budget: float | None = None,
) -> Pruned:
    """Prune every kind older than its period in the settings, a chunk per transaction, until
    none is left or the time budget is spent (defaults: ROWS_PER_STATEMENT,
    TIME_BUDGET_SECONDS). Every kind gets at least one chunk per run, so a big backlog of one
    kind never keeps the others from being pruned."""
    rows_per_statement = rows_per_statement or ROWS_PER_STATEMENT
    time_budget = TIME_BUDGET_SECONDS if time_budget is None else time_budget
    now = utcnow()
    deadline = time.monotonic() + time_budget
    result = Pruned()
    for rule in RULES:
        cutoff = _cutoff(now, rule.days(services.settings))
        statement = rule.statement(services.db.dialect, cutoff, rows_per_statement)
        while True:
            with services.db.transaction() as session:
                done = int(session.execute(statement).rowcount)  # type: ignore[attr-defined]
            result.pruned[rule.kind] += done
            if done < rows_per_statement:
                break  # a chunk that was not full: nothing of this kind is left
            if time.monotonic() >= deadline:
                result.more = True  # the next run (sent at once) goes on from here
                break
    _report(result)
    return result


def _cutoff(now: dt.datetime, days: float) -> dt.datetime:
    return now - dt.timedelta(days=days)


def _report(result: Pruned) -> None:
    """One line per run, and only when something went: an hourly "nothing to do" is noise."""
    for kind, rows in result.pruned.items():
        if rows:
            PRUNED.labels(kind).inc(rows)
    if any(result.pruned.values()):
        counts = " ".join(f"{kind}={rows}" for kind, rows in result.pruned.items() if rows)
        log.info("retention: pruned %s", counts, extra={"pruned": result.pruned})
