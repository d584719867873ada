"""The closed set of Celery queues and which task goes to which: the one place that names them.

The worker command line (`loke-sync worker`), the broker's routing, the metrics and the tests all
read them from here.
"""

from __future__ import annotations

from enum import StrEnum


class QueueName(StrEnum):
    """The queues. Live events never wait behind a backfill or a list resync."""

    EVENTS = "events"
    DELIVERY = "delivery"
    BACKFILL = "backfill"
    LISTS = "lists"


ALL_QUEUES = tuple(QueueName)

# By the prefix of the task's stable name (`app.core.task_names`).
TASK_ROUTES: dict[str, dict[str, str]] = {
    "events.*": {"queue": QueueName.EVENTS},
    "delivery.*": {"queue": QueueName.DELIVERY},
    "backfill.*": {"queue": QueueName.BACKFILL},
    "lists.*": {"queue": QueueName.LISTS},
    "orgs.*": {"queue": QueueName.BACKFILL},
}


def parse_queues(text: str) -> list[QueueName]:
    """Queue names as a worker's `--queues` gives them ("events,delivery"); raises ValueError
    naming the first one that is not a queue of the service."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("no queue named")
    unknown = [name for name in names if name not in set(QueueName)]
    if unknown:
        known = ",".join(ALL_QUEUES)
        raise ValueError(f"unknown queue {unknown[0]!r}; the queues are {known}")
    return [QueueName(name) for name in names]
