"""Beat's static schedule, as data: the one place to look for what runs when."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from app.core import task_names
from app.core.config import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Beat's entries. Per-organization timing lives in the database, not here."""
    sweep_interval_seconds = settings.sweep_interval_seconds
    return {
        # A broker that lost messages must not lose events: re-send work for stored rows.
        "sweep-inbox": {"task": task_names.EVENTS_SWEEP, "schedule": sweep_interval_seconds},
        # The same safety net for the outbox (lost flush tasks, leases of killed workers).
        "sweep-outbox": {"task": task_names.DELIVERY_SWEEP, "schedule": sweep_interval_seconds},
        # Backfills whose page task was lost with a killed worker resume from the checkpoint.
        "sweep-backfills": {"task": task_names.BACKFILL_SWEEP, "schedule": sweep_interval_seconds},
        "sweep-list-resyncs": {"task": task_names.LISTS_SWEEP, "schedule": sweep_interval_seconds},
        # One static entry: organizations' own list intervals live in the database.
        "dispatch-due-list-resyncs": {
            "task": task_names.LISTS_DUE,
            "schedule": settings.list_dispatch_seconds,
        },
        # Each organization is reconciled when the interval has passed since its last sweep.
        "reconcile-due-orgs": {
            "task": task_names.RECONCILE_DUE,
            "schedule": min(60.0, settings.reconcile_interval_seconds / 2),
        },
        # Subscriptions deleted or changed at LOKE are put back once a day.
        "check-subscriptions": {
            "task": task_names.CHECK_SUBSCRIPTIONS,
            "schedule": crontab(hour=4, minute=17),
        },
    }
