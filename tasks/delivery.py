"""Tasks of the `delivery` queue: send an organization's outbox; re-kick forgotten ones."""

from __future__ import annotations

from celery import shared_task

from app import services
from app.delivery import sweep as outbox_sweep
from app.delivery.sender import flush_org
from app.task_names import DELIVERY_FLUSH, DELIVERY_SWEEP


@shared_task(name=DELIVERY_FLUSH)
def flush(org_id: str, kick: str = "now") -> None:
    flush_org(services(), org_id, kick)


@shared_task(name=DELIVERY_SWEEP)
def sweep() -> None:
    found = services()
    after = found.settings.outbox_sweep_after_seconds
    for org_id in outbox_sweep.orgs_with_forgotten_work(found.db, after):
        found.dispatcher.send(DELIVERY_FLUSH, (org_id,))
