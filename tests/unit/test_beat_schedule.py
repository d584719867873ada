"""Beat's schedule: every periodic task expires within its own interval (so ticks sent while the
workers are down do not pile up), and every task it sends is registered and routed to a queue
of the service."""

from __future__ import annotations

import datetime as dt
import importlib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
from celery import Task
from celery.schedules import crontab

from app.core.config import Settings, load_settings
from app.core.queues import TASK_ROUTES, QueueName
from app.core.task_names import RETENTION_PRUNE
from tests.support.credentials import ADMIN_TOKEN, SECRET_KEY
from workers.celery_app import TASK_MODULES
from workers.schedule import MIN_EXPIRES_SECONDS, beat_schedule


@pytest.fixture(params=["defaults", "short", "long"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    knobs: dict[str, dict[str, Any]] = {
        "defaults": {},
        "short": {"sweep_interval_seconds": 1, "list_dispatch_seconds": 2,
                  "reconcile_interval_seconds": 30, "retention_interval_seconds": 5},
        "long": {"sweep_interval_seconds": 600, "list_dispatch_seconds": 900,
                 "reconcile_interval_seconds": 7200, "retention_interval_seconds": 86_400},
    }  # fmt: skip
    return load_settings(
        var_dir=tmp_path, admin_token=ADMIN_TOKEN, secret_key=SECRET_KEY, **knobs[request.param]
    )


def interval_seconds(schedule: float | crontab) -> float:
    """Seconds between two consecutive ticks (for a crontab, two of its occurrences)."""
    if not isinstance(schedule, crontab):
        return float(schedule)

    def following(moment: dt.datetime) -> dt.datetime:
        start, delta, _ = schedule.remaining_delta(moment)
        later: dt.datetime = start + delta
        return later

    first = following(dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.UTC))
    return (following(first) - first).total_seconds()


def test_every_periodic_task_expires_within_its_interval(settings: Settings) -> None:
    schedule = beat_schedule(settings)
    for name, entry in schedule.items():
        expires = entry.get("options", {}).get("expires")
        assert expires is not None, f"{name} has no expires"
        assert 0 < expires <= max(interval_seconds(entry["schedule"]), MIN_EXPIRES_SECONDS), name


def test_retention_runs_at_its_configured_interval(settings: Settings) -> None:
    [entry] = [e for e in beat_schedule(settings).values() if e["task"] == RETENTION_PRUNE]
    assert entry["schedule"] == settings.retention_interval_seconds


def registered_task_names() -> set[str]:
    names = set()
    for module_name in TASK_MODULES:
        module = importlib.import_module(module_name)
        names |= {task.name for task in vars(module).values() if isinstance(task, Task)}
    return names


def test_every_scheduled_task_is_registered_and_routed_to_a_queue_of_the_service(
    settings: Settings,
) -> None:
    registered = registered_task_names()
    for entry in beat_schedule(settings).values():
        assert entry["task"] in registered
        queues = [route["queue"] for pattern, route in TASK_ROUTES.items()
                  if fnmatch(entry["task"], pattern)]  # fmt: skip
        assert len(queues) == 1, entry["task"]
    # Housekeeping never waits in front of live events (the default queue is `events`).
    [retention_queue] = [r["queue"] for p, r in TASK_ROUTES.items() if fnmatch(RETENTION_PRUNE, p)]
    assert retention_queue == QueueName.BACKFILL
