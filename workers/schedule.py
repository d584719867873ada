"""Beat's static schedule, as data: the one place to look for what runs when."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from app.core import task_names
from app.core.config import Settings

DAY_SECONDS = 86_400.0
# The shortest expiry: a test stack sweeps every second, and on a busy machine a worker may
# not start a tick within one; dropping every tick would leave lost work unswept.
MIN_EXPIRES_SECONDS = 10.0


def _entry(task: str, every: float | crontab, interval_seconds: float) -> dict[str, Any]:
    """An entry whose message expires after one interval (MIN_EXPIRES_SECONDS at least).

    Beat sends on time even while the workers are down; without an expiry those messages pile
    up and run back to back when the workers return. Every periodic task looks at the state as
    it is then, so a tick not started within its interval is dropped: the next one is already
    on its way."""
    expires = max(interval_seconds, MIN_EXPIRES_SECONDS)
    return {"task": task, "schedule": every, "options": {"expires": expires}}


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Beat's entries. Per-organization timing lives in the database, not here."""
    sweep = settings.sweep_interval_seconds
    reconcile_every = min(60.0, settings.reconcile_interval_seconds / 2)
    return {
        # A broker that lost messages must not lose events: re-send work for stored rows.
        "sweep-inbox": _entry(task_names.EVENTS_SWEEP, sweep, sweep),
        # The same safety net for the outbox (lost flush tasks, leases of killed workers).
        "sweep-outbox": _entry(task_names.DELIVERY_SWEEP, sweep, sweep),
        # Backfills whose page task was lost with a killed worker resume from the checkpoint.
        "sweep-backfills": _entry(task_names.BACKFILL_SWEEP, sweep, sweep),
        "sweep-list-resyncs": _entry(task_names.LISTS_SWEEP, sweep, sweep),
        # One static entry: organizations' own list intervals live in the database.
        "dispatch-due-list-resyncs": _entry(
            task_names.LISTS_DUE, settings.list_dispatch_seconds, settings.list_dispatch_seconds
        ),
        # Each organization is reconciled when the interval has passed since its last sweep.
        "reconcile-due-orgs": _entry(task_names.RECONCILE_DUE, reconcile_every, reconcile_every),
        # Subscriptions deleted or changed at LOKE are put back once a day.
        "check-subscriptions": _entry(
            task_names.CHECK_SUBSCRIPTIONS, crontab(hour=4, minute=17), DAY_SECONDS
        ),
        # The dashboard's backlog and lag charts: a sample at the start of every minute.
        "sample-activity": _entry(task_names.ACTIVITY_SAMPLE, crontab(), 60.0),
        # What is kept no longer (old event bodies and events, replayed dead letters, runs).
        "prune-retention": _entry(
            task_names.RETENTION_PRUNE,
            settings.retention_interval_seconds,
            settings.retention_interval_seconds,
        ),
    }
