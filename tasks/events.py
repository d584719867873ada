"""Tasks of the `events` queue: apply stored webhooks; re-send work for forgotten ones."""

from __future__ import annotations

from celery import shared_task

from app import inbox, services
from app.processing import drain_inbox
from app.task_names import EVENTS_DRAIN, EVENTS_SWEEP


@shared_task(name=EVENTS_DRAIN)
def drain(kick: str = "now") -> None:
    drain_inbox(services(), kick)


@shared_task(name=EVENTS_SWEEP)
def sweep() -> None:
    found = services()
    with found.db.transaction() as session:
        age = inbox.oldest_pending_age_seconds(session)
    if age is not None and age >= found.settings.inbox_sweep_after_seconds:
        found.dispatcher.send(EVENTS_DRAIN)
