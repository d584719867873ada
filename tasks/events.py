"""Tasks of the `events` queue: apply stored webhooks; re-send work for forgotten ones."""

from __future__ import annotations

import logging

from celery import shared_task

from app.core.kicks import Kick
from app.core.services import current_services
from app.core.task_names import EVENTS_DRAIN, EVENTS_SWEEP
from app.ingest import inbox
from app.ingest.apply import drain_inbox

log = logging.getLogger(__name__)


@shared_task(name=EVENTS_DRAIN)
def drain(kick: str = Kick.NOW) -> None:
    """Apply pending events (`kick`: which kind of kick sent this task)."""
    drain_inbox(current_services(), sent_by=kick)


@shared_task(name=EVENTS_SWEEP)
def sweep() -> None:
    """Send a drain if events have waited too long (their task was lost)."""
    services = current_services()
    with services.db.transaction() as session:
        age = inbox.oldest_pending_age_seconds(session)
    if age is not None and age >= services.settings.inbox_sweep_after_seconds:
        services.dispatcher.send(EVENTS_DRAIN)
        # A periodic task logs at INFO only when it did something (app.core.logs: QuietTicks).
        log.info("events pending for %.0f s: sent a drain", age)
