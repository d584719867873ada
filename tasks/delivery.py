"""Tasks of the `delivery` queue: send an organization's outbox; re-kick forgotten ones."""

from __future__ import annotations

from celery import shared_task

from app.core.kicks import Kick
from app.core.services import current_services
from app.core.task_names import DELIVERY_FLUSH, DELIVERY_SWEEP
from app.delivery.sender import flush_org
from app.delivery.sweep import orgs_with_forgotten_work


@shared_task(name=DELIVERY_FLUSH)
def flush(org_id: str, kick: str = Kick.NOW) -> None:
    """Deliver what is pending for one organization (`kick`: which kind of kick sent this)."""
    flush_org(current_services(), org_id, sent_by=kick)


@shared_task(name=DELIVERY_SWEEP)
def sweep() -> None:
    """Send a flush for every organization whose due work nobody is doing."""
    services = current_services()
    after = services.settings.outbox_sweep_after_seconds
    for org_id in orgs_with_forgotten_work(services.db, after):
        services.dispatcher.send(DELIVERY_FLUSH, (org_id,))
