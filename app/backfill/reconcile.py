"""Reconciliation: heal what missed webhooks left behind.

LOKE retries a webhook for only minutes, so an outage longer than that loses events at the
source. Every RECONCILE_INTERVAL_SECONDS each connected organization's customers, then its
payments, are read newest-first (`sort=updated`) back to where the previous sweep started, minus
RECONCILE_OVERLAP_SECONDS (for clock skew and changes committed late at LOKE), and applied
through the same rules as webhooks: anything already newer here is left alone, and a refund is
never undone.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import or_, select

from app.backfill import payments as payment_pages
from app.backfill.customers import parse_customers
from app.core.services import Services
from app.core.task_names import DELIVERY_FLUSH
from app.loke.client import LokeClient
from app.mirror.customers import apply_customers
from app.mirror.payments import apply_payments
from app.store.db import utcnow
from app.store.models import Organization

log = logging.getLogger(__name__)

NEWEST_FIRST = "/organizations/{org_id}/customers?sort=updated"


@dataclass(frozen=True)
class Reconciled:
    """What one sweep read, and how many customers it changed."""

    pages: int
    customers: int
    changed: int
    payments: int = 0
    payments_changed: int = 0


def due_orgs(services: Services) -> list[str]:
    """Connected organizations whose last sweep is older than the interval; marked as started
    so that the next dispatch waits a whole interval even if this sweep dies."""
    now = utcnow()
    cutoff = now - dt.timedelta(seconds=services.settings.reconcile_interval_seconds)
    with services.db.transaction() as session:
        orgs = list(
            session.scalars(
                select(Organization)
                .where(
                    Organization.connected,
                    or_(Organization.reconciled_at.is_(None), Organization.reconciled_at < cutoff),
                )
                .with_for_update(skip_locked=True)
            )
        )
        for org in orgs:
            org.reconciled_at = now
        return [org.id for org in orgs]


def reconcile(services: Services, loke: LokeClient, org_id: str) -> Reconciled | None:
    """Read the organization's customers newest first back to the last sweep's start (minus the
    overlap) and apply them; None when it is not connected."""
    started = utcnow()
    with services.db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None or not org.connected:
            return None
        # Never reconciled: the backfill started at connection covers what came before.
        watermark = org.reconciled_until or org.created_at
    floor = watermark - dt.timedelta(seconds=services.settings.reconcile_overlap_seconds)
    paginator = loke.paginator(NEWEST_FIRST.format(org_id=org_id))
    pages = customers = changed = 0
    while True:
        page = loke.get_page(paginator)
        changes, _ = parse_customers(page.items)
        with services.db.transaction() as session:
            changed += len(apply_customers(session, org_id, changes))
        pages += 1
        customers += len(changes)
        reached_floor = any(c.source_at is not None and c.source_at < floor for c in changes)
        if reached_floor or page.next_url is None:
            break
    paginator = loke.paginator(payment_pages.NEWEST_FIRST.format(org_id=org_id))
    paid = paid_changed = 0
    while True:
        page = loke.get_page(paginator)
        payment_page = payment_pages.parse_payments(page.items, floor)
        with services.db.transaction() as session:
            apply_customers(session, org_id, payment_page.buyers)
            paid_changed += len(apply_payments(session, org_id, payment_page.changes))
        pages += 1
        paid += len(payment_page.changes)
        if payment_page.reached_start or page.next_url is None:
            break
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is not None:
            # The next sweep walks back to this sweep's start, not its end: nothing changed
            # while it ran can fall between the two.
            org.reconciled_until = started
            org.reconciled_at = utcnow()
    if changed or paid_changed:
        services.kicks.kick(DELIVERY_FLUSH, org_id)
        log.info("reconciliation of %s healed %d customers and %d payments", org_id, changed,
                 paid_changed)  # fmt: skip
    return Reconciled(pages, customers, changed, paid, paid_changed)
