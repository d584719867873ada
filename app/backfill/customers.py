"""Backfill pages of customers: every existing customer of an organization, a page per task.

A page is applied through the same rules as webhooks (a newer webhook always wins over an older
backfilled record) in one batched statement, and the next page's URL is checkpointed in the
same transaction. Two tasks for the same page cannot both apply it: the checkpoint moves on
only from the URL the task fetched.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import TypeAdapter, ValidationError

from app.backfill import paged_runs, payments
from app.core.metrics import PAGES
from app.core.services import Services
from app.core.task_names import BACKFILL_PAGE, DELIVERY_FLUSH
from app.core.validation import summary
from app.loke.client import LokeClient
from app.loke.records import Customer as CustomerRecord
from app.mirror.customers import CustomerChange, apply_customers, change_from_record
from app.store.models import BackfillRun

log = logging.getLogger(__name__)


def run_page(
    services: Services,
    loke: LokeClient,
    run_id: int,
    url: str | None = None,
    previous_url: str | None = None,
) -> None:
    """Fetch the run's next page (or `url`, sent ahead), send the task for the page after,
    apply this one and checkpoint."""
    with paged_runs.crashes_counted(services, BackfillRun, run_id):
        _run_page(services, loke, run_id, url, previous_url)


def _run_page(
    services: Services, loke: LokeClient, run_id: int, url: str | None, previous_url: str | None
) -> None:
    fetched = paged_runs.fetch(
        services, loke, BackfillRun, run_id, BACKFILL_PAGE, url=url, previous_url=previous_url
    )
    if fetched is None:
        return
    if payments.is_payments_page(fetched.url):
        payments.apply_page(services, run_id, fetched)
        return
    changes, invalid = parse_customers(fetched.page.items)
    with services.db.transaction() as session:
        run = paged_runs.lock_at(session, BackfillRun, run_id, fetched.url)
        if run is None:
            return
        paged_runs.send_next(services, BACKFILL_PAGE, run_id, fetched)
        changed = apply_customers(session, fetched.org_id, changes)
        run.customers += len(changes)
        run.invalid += invalid
        paged_runs.advance(run, fetched)
        if run.status == "finished":
            payments.begin(services, run)
    PAGES.labels("backfill").inc()
    services.db.refresh_statistics("customers", "outbox", only_if_stale=True)
    if changed:
        services.kicks.kick(DELIVERY_FLUSH, fetched.org_id)


_CUSTOMER_PAGE = TypeAdapter(list[CustomerRecord])


def parse_customers(items: list[dict[str, Any]]) -> tuple[list[CustomerChange], int]:
    """Valid customers as changes, and how many records could not be read (logged by id)."""
    try:
        records = _CUSTOMER_PAGE.validate_python(items)  # one call for the page: the usual case
    except ValidationError:
        pass  # some record is unreadable: find it, keep the rest
    else:
        return [change_from_record(record) for record in records], 0
    changes: list[CustomerChange] = []
    invalid = 0
    for item in items:
        try:
            changes.append(change_from_record(CustomerRecord.model_validate(item)))
        except ValidationError as exc:
            invalid += 1
            ident = item.get("id") if isinstance(item, dict) else None
            log.warning("unreadable customer %r: %s", ident, summary(exc, limit=1))
    return changes, invalid
