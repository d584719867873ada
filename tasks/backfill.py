"""Tasks of the `backfill` queue: backfill pages, reconciliation, subscription checks."""

from __future__ import annotations

from celery import shared_task

from app import backfill, logs, loke_client, paged_runs, reconcile, services, subscriptions
from app.models import BackfillRun
from app.task_names import (
    BACKFILL_PAGE,
    BACKFILL_SWEEP,
    CHECK_SUBSCRIPTIONS,
    RECONCILE_DUE,
    RECONCILE_ORG,
)


@shared_task(name=BACKFILL_PAGE)
def page(run_id: int, url: str | None = None, previous_url: str | None = None) -> None:
    backfill.run_page(services(), loke_client(), run_id, url, previous_url)


@shared_task(name=BACKFILL_SWEEP)
def sweep() -> None:
    found = services()
    for run_id in paged_runs.stalled(found, BackfillRun):
        found.dispatcher.send(BACKFILL_PAGE, (run_id,))


@shared_task(name=RECONCILE_DUE)
def reconcile_due() -> None:
    found = services()
    for org_id in reconcile.due_orgs(found):
        found.dispatcher.send(RECONCILE_ORG, (org_id,))


# A sweep walks only what changed since the last one; the limits leave room for a long outage.
@shared_task(name=RECONCILE_ORG, soft_time_limit=900, time_limit=960)
def reconcile_org(org_id: str) -> None:
    with logs.context(org_id=org_id):
        reconcile.reconcile(services(), loke_client(), org_id)


@shared_task(name=CHECK_SUBSCRIPTIONS)
def check_subscriptions() -> None:
    subscriptions.check_all(services(), loke_client())
