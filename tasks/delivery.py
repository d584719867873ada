"""Tasks of the `delivery` queue: send an organization's outbox; re-kick forgotten ones."""

from __future__ import annotations

import logging

from celery import shared_task

from app.core.kicks import Kick
from app.core.services import current_services
from app.core.task_names import DELIVERY_FLUSH, DELIVERY_SWEEP
from app.delivery.sender import flush_org
from app.delivery.sweep import orgs_with_forgotten_work

log = logging.getLogger(__name__)


@shared_task(name=DELIVERY_FLUSH)
def flush(org_id: str, kick: str = Kick.NOW) -> None:
    """Deliver what is pending for one organization (`kick`: which kind of kick sent this)."""
    flush_org(current_services(), org_id, sent_by=kick)


@shared_task(name=DELIVERY_SWEEP)
def sweep() -> None:
    """Send a flush for every organization whose due work nobody is doing."""
    services = current_services()
    after = services.settings.outbox_sweep_after_seconds
    forgotten = orgs_with_forgotten_work(services.db, after)
    for org_id in forgotten:
        services.dispatcher.send(DELIVERY_FLUSH, (org_id,))
    if forgotten:  # periodic: an INFO line only when it did something (app.core.logs)
        log.info("delivery waiting nobody was doing: sent a flush for %s", ", ".join(forgotten))
