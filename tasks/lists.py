"""Tasks of the `lists` queue: the reader and the pages of list resyncs, the due-list dispatcher."""

from __future__ import annotations

import logging

from celery import shared_task

from app.backfill import paged_runs
from app.core.services import current_services
from app.core.task_names import LISTS_DUE, LISTS_READ, LISTS_STAGE, LISTS_SWEEP
from app.lists import reader, runs, stager
from app.loke.client import current_loke_client
from app.store.models import ListSyncRun

log = logging.getLogger(__name__)


@shared_task(name=LISTS_READ)
def read(run_id: int) -> None:
    """Read a resync's member pages from the first one not stored yet."""
    reader.read_pages(current_services(), current_loke_client(), run_id)


@shared_task(name=LISTS_STAGE)
def stage(run_id: int, seq: int, refetch: bool = False) -> None:
    """Stage one stored member page (read from LOKE again with `refetch`)."""
    stager.stage_page(current_services(), current_loke_client(), run_id, seq, refetch)


@shared_task(name=LISTS_SWEEP)
def sweep() -> None:
    """Resume stalled resyncs; drop the staging of those that are over."""
    services = current_services()
    stalled = paged_runs.stalled(services, ListSyncRun)
    for run_id in stalled:
        runs.resume(services, run_id)
    dropped = runs.clear_stale_staging(services)
    # Periodic: an INFO line only when it did something (app.core.logs).
    if stalled:
        log.info("list resyncs stalled, resumed: %s", ", ".join(str(r) for r in stalled))
    if dropped:
        log.info("staging tables of %d finished list resyncs dropped", dropped)


@shared_task(name=LISTS_DUE)
def dispatch_due() -> None:
    """Beat runs this every minute; each organization's own interval decides what is due."""
    services = current_services()
    due = runs.due_orgs(services)
    for org_id in due:
        runs.start_chosen(services, org_id)
    if due:  # periodic: an INFO line only when it did something (app.core.logs)
        log.info("list resyncs due: started for %s", ", ".join(due))
