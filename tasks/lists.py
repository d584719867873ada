"""Tasks of the `lists` queue: the reader and the pages of list resyncs, the due-list dispatcher."""

from __future__ import annotations

from celery import shared_task

from app import list_pages, list_reader, lists, loke_client, paged_runs, services
from app.models import ListSyncRun
from app.task_names import LISTS_DUE, LISTS_READ, LISTS_STAGE, LISTS_SWEEP


@shared_task(name=LISTS_READ)
def read(run_id: int) -> None:
    list_reader.read_pages(services(), loke_client(), run_id)


@shared_task(name=LISTS_STAGE)
def stage(run_id: int, seq: int, refetch: bool = False) -> None:
    list_pages.stage_page(services(), loke_client(), run_id, seq, refetch)


@shared_task(name=LISTS_SWEEP)
def sweep() -> None:
    found = services()
    for run_id in paged_runs.stalled(found, ListSyncRun):
        list_pages.resume(found, run_id)
    lists.clear_stale_staging(found)


@shared_task(name=LISTS_DUE)
def dispatch_due() -> None:
    """Beat runs this every minute; each organization's own interval decides what is due."""
    found = services()
    for org_id in lists.due_orgs(found):
        lists.start_chosen(found, org_id)
