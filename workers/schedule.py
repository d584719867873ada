"""Queues, routing and the beat schedule, as data: the one place to look."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from app import task_names


class QueueName(StrEnum):
    """The closed set of queues. Live events never wait behind a backfill or a list resync."""

    EVENTS = "events"
    DELIVERY = "delivery"
    BACKFILL = "backfill"
    LISTS = "lists"


TASK_ROUTES: dict[str, dict[str, str]] = {
    "events.*": {"queue": QueueName.EVENTS},
    "delivery.*": {"queue": QueueName.DELIVERY},
    "backfill.*": {"queue": QueueName.BACKFILL},
    "lists.*": {"queue": QueueName.LISTS},
}


def beat_schedule(sweep_interval_seconds: float) -> dict[str, dict[str, Any]]:
    """Beat's static schedule. Per-organization timing lives in the database, not here."""
    return {
        # A broker that lost messages must not lose events: re-send work for stored rows.
        "sweep-inbox": {"task": task_names.EVENTS_SWEEP, "schedule": sweep_interval_seconds},
        # The same safety net for the outbox (lost flush tasks, leases of killed workers).
        "sweep-outbox": {"task": task_names.DELIVERY_SWEEP, "schedule": sweep_interval_seconds},
    }
