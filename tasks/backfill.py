"""Tasks of the `backfill` queue: backfill pages, reconciliation, subscription checks."""

from __future__ import annotations

import logging

from celery import shared_task

from app.backfill import customers as backfill_pages
from app.backfill import paged_runs, reconcile
from app.core import logs
from app.core.services import current_services
from app.core.task_names import (
    BACKFILL_PAGE,
    BACKFILL_SWEEP,
    CHECK_SUBSCRIPTIONS,
    RECONCILE_DUE,
    RECONCILE_ORG,
)
from app.loke.client import current_loke_client
from app.orgs import connect as org_connect
from app.orgs import subscriptions
from app.store.models import BackfillRun

log = logging.getLogger(__name__)


@shared_task(name=BACKFILL_PAGE)
def page(run_id: int, url: str | None = None, previous_url: str | None = None) -> None:
    """Apply one page of a backfill (at its checkpoint, or at `url`, sent ahead)."""
    backfill_pages.run_page(current_services(), current_loke_client(), run_id, url, previous_url)


@shared_task(name=BACKFILL_SWEEP)
def sweep() -> None:
    """Resume backfills whose page task was lost with a worker; start those a connect cut
    short never started."""
    services = current_services()
    stalled = paged_runs.stalled(services, BackfillRun)
    for run_id in stalled:
        services.dispatcher.send(BACKFILL_PAGE, (run_id,))
    started = org_connect.start_missing_backfills(services)
    # Periodic: an INFO line only when it did something (app.core.logs).
    if stalled:
        log.info("backfills stalled, sent their page again: %s", ", ".join(str(r) for r in stalled))
    if started:
        log.info("backfills never started, started: %s", ", ".join(started))


@shared_task(name=RECONCILE_DUE)
def reconcile_due() -> None:
    """Send a reconciliation for every organization whose interval has passed."""
    services = current_services()
    due = reconcile.due_orgs(services)
    for org_id in due:
        services.dispatcher.send(RECONCILE_ORG, (org_id,))
    if due:  # periodic: an INFO line only when it did something (app.core.logs)
        log.info("reconciliation due: sent for %s", ", ".join(due))


# A sweep walks only what changed since the last one; the limits leave room for a long outage.
@shared_task(name=RECONCILE_ORG, soft_time_limit=900, time_limit=960)
def reconcile_org(org_id: str) -> None:
    """Reconcile one organization's customers with LOKE."""
    with logs.context(org_id=org_id):
        reconcile.reconcile(current_services(), current_loke_client(), org_id)


@shared_task(name=CHECK_SUBSCRIPTIONS)
def check_subscriptions() -> None:
    """Check, and repair, every connected organization's LOKE subscription."""
    checked = subscriptions.check_all(current_services(), current_loke_client())
    # Periodic: an INFO line only when something was put back (drift is logged as it is found).
    repaired = [check.org_id for check in checked if check.state == "repaired"]
    if repaired:
        log.info("subscriptions checked: %d, repaired: %s", len(checked), ", ".join(repaired))
