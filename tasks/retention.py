"""The retention task (on the `backfill` queue): prune what is kept no longer, as beat asks."""

from __future__ import annotations

from celery import shared_task

from app.core.services import current_services
from app.core.task_names import RETENTION_PRUNE
from app.retention import prune as retention


@shared_task(name=RETENTION_PRUNE)
def prune() -> None:
    """Prune old rows within the run's time budget; a first run on a big table that has more
    left goes on in the next task at once rather than an interval later."""
    services = current_services()
    if retention.prune(services).more:
        services.dispatcher.send(RETENTION_PRUNE)
