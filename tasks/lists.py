"""Tasks of the `lists` queue: member pages of list resyncs, the due-list dispatcher."""

from __future__ import annotations

from celery import shared_task

from app import list_pages, lists, loke_client, paged_runs, services
from app.models import ListSyncRun
from app.task_names import LISTS_DUE, LISTS_PAGE, LISTS_SWEEP


@shared_task(name=LISTS_PAGE)
def page(
    run_id: int, url: str | None = None, previous_url: str | None = None, seq: int | None = None
) -> None:
    list_pages.run_page(services(), loke_client(), run_id, url, previous_url, seq)


@shared_task(name=LISTS_SWEEP)
def sweep() -> None:
    found = services()
    for run_id in paged_runs.stalled(found, ListSyncRun):
        found.dispatcher.send(LISTS_PAGE, (run_id,))
    lists.clear_stale_staging(found)


@shared_task(name=LISTS_DUE)
def dispatch_due() -> None:
    """Beat runs this every minute; each organization's own interval decides what is due."""
    found = services()
    for org_id in lists.due_orgs(found):
        lists.start_chosen(found, org_id)
