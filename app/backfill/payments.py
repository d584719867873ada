"""Payment history: after an organization's customers, its payments, newest change first, back
to `paymentHistorySince`, a page per task with the customers' checkpoint and retries.

Newest change first (`sort=updated`) lets the walk stop at the history's start instead of
reading every payment ever made; a payment that changes during the walk may move past the
cursor, but the reconciliation that starts at connection reads every change since (and webhooks
bring them too). A page is applied by the webhooks' rules (a refund is never undone, a
completion after it changes nothing); a payment's customer is kept from the payment until the
customer itself arrives; guests' payments are stored and not delivered.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

from app.backfill import paged_runs
from app.core.metrics import PAGES
from app.core.services import Services
from app.core.task_names import BACKFILL_PAGE, DELIVERY_FLUSH
from app.core.validation import summary
from app.loke.records import Payment as PaymentRecord
from app.mirror import customers, payments
from app.store.models import BackfillRun

log = logging.getLogger(__name__)

NEWEST_FIRST = "/organizations/{org_id}/payments?sort=updated"
_PAYMENT_PAGE = TypeAdapter(list[PaymentRecord])


def is_payments_page(url: str) -> bool:
    """Whether a page URL (full, or a path) is of the Payments endpoint."""
    return urlsplit(url).path.rstrip("/").endswith("/payments")


def begin(services: Services, run: BackfillRun) -> None:
    """The run's customers are all read (the run, locked, just finished): go on with its
    payments if the organization wants them. The first page's task is sent with its URL, so it
    applies only once this transaction has moved the checkpoint there."""
    if not run.with_payments:
        return
    first = NEWEST_FIRST.format(org_id=run.org_id)
    run.status, run.finished_at, run.phase = "running", None, "payments"
    run.next_url, run.previous_url = first, None
    services.dispatcher.send(BACKFILL_PAGE, (run.id, first, None))


@dataclass(frozen=True)
class PaymentPage:
    """A page of payments as the mirror takes them, and whether it reached the history's start."""

    changes: list[payments.PaymentChange]
    buyers: list[customers.CustomerChange]  # the customers the payments name
    invalid: int
    reached_start: bool


def parse_payments(items: list[dict[str, Any]], since: dt.datetime | None) -> PaymentPage:
    """The page's completed and refunded payments whose last change is at or after `since`."""
    try:
        records = _PAYMENT_PAGE.validate_python(items)
        invalid = 0
    except ValidationError:
        records, invalid = _readable(items)
    kept: list[PaymentRecord] = []
    reached = False
    for record in records:
        changed = record.refunded_at or record.completed_at or record.created_at
        if since is not None and changed is not None and changed < since:
            reached = True  # newest first: everything after this is older still
            continue
        if record.completed_at is not None or record.refunded_at is not None:
            kept.append(record)  # a payment not completed yet arrives by webhook when it is
    changes = [payments.change_from_payment(r, refunded_event=False) for r in kept]
    buyers = [customers.change_from_tiny(r.customer) for r in kept if r.customer is not None]
    return PaymentPage(changes, buyers, invalid, reached)


def _readable(items: list[dict[str, Any]]) -> tuple[list[PaymentRecord], int]:
    records: list[PaymentRecord] = []
    invalid = 0
    for item in items:
        try:
            records.append(PaymentRecord.model_validate(item))
        except ValidationError as exc:
            invalid += 1
            ident = item.get("id") if isinstance(item, dict) else None
            log.warning("unreadable payment %r: %s", ident, summary(exc, limit=1))
    return records, invalid


def apply_page(services: Services, run_id: int, fetched: paged_runs.Fetched) -> None:
    """Apply a fetched page of payments and move the checkpoint (finishing the run at the last
    page, or at the history's start)."""
    with services.db.transaction() as session:
        run = paged_runs.lock_at(session, BackfillRun, run_id, fetched.url)
        if run is None:
            return
        page = parse_payments(fetched.page.items, run.payments_from)
        if not page.reached_start:
            paged_runs.send_next(services, BACKFILL_PAGE, run_id, fetched)
        customers.apply_customers(session, fetched.org_id, page.buyers)
        changed = payments.apply_payments(session, fetched.org_id, page.changes)
        run.payments += len(page.changes)
        run.invalid += page.invalid
        paged_runs.advance(run, fetched)
        if page.reached_start and run.status == "running":
            run.next_url = None
            run.status, run.finished_at = "finished", run.updated_at
    PAGES.labels("backfill").inc()
    services.db.refresh_statistics("payments", "outbox", only_if_stale=True)
    if changed:
        services.kicks.kick(DELIVERY_FLUSH, fetched.org_id)
