"""Backfill: every existing customer of an organization, one page per task, resumably.

A page is applied through the same rules as webhooks (a newer webhook always wins over an older
backfilled record) in one batched statement, and the next page's URL is checkpointed in the
same transaction. Two tasks for the same page cannot both apply it: the checkpoint moves on
only from the URL the task fetched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import mirror, paged_runs
from app.db import utcnow
from app.events import Customer as CustomerRecord
from app.loke.client import LokeClient
from app.metrics import PAGES
from app.models import BackfillRun, Organization
from app.services import Services
from app.task_names import BACKFILL_PAGE, DELIVERY_FLUSH
from app.validation import summary

log = logging.getLogger(__name__)

# sort=created keeps pages stable while customers change; sort=updated would shift them.
FIRST_PAGE = "/organizations/{org_id}/customers?sort=created"


class NotConnected(LookupError):
    pass


@dataclass(frozen=True)
class Started:
    run_id: int
    started: bool  # False: a run was already going, nothing new was started


def start(services: Services, org_id: str) -> Started:
    """Start a full backfill, or resume the last one if it failed; one run per organization."""
    now = utcnow()
    try:
        with services.db.transaction() as session:
            org = session.get(Organization, org_id)
            if org is None or not org.connected:
                raise NotConnected(org_id)
            running = _running(session, org_id)
            if running is not None:
                return Started(running.id, False)
            latest = session.scalars(
                select(BackfillRun)
                .where(BackfillRun.org_id == org_id)
                .order_by(BackfillRun.id.desc())
                .limit(1)
            ).first()
            if latest is not None and latest.status == "failed" and latest.next_url:
                run = latest  # resume from its checkpoint
                run.status, run.attempts, run.finished_at = "running", 0, None
            else:
                run = BackfillRun(
                    org_id=org_id,
                    status="running",
                    next_url=FIRST_PAGE.format(org_id=org_id),
                    pages=0,
                    customers=0,
                    invalid=0,
                    attempts=0,
                    started_at=now,
                )
                session.add(run)
            run.updated_at = now
            session.flush()
            run_id = run.id
    except IntegrityError:
        # Another caller started one between our check and our insert: that one stands.
        with services.db.transaction() as session:
            running = _running(session, org_id)
            if running is None:
                raise
            return Started(running.id, False)
    services.dispatcher.send(BACKFILL_PAGE, (run_id,))
    return Started(run_id, True)


def _running(session: Session, org_id: str) -> BackfillRun | None:
    return session.scalars(
        select(BackfillRun).where(BackfillRun.org_id == org_id, BackfillRun.status == "running")
    ).first()


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
    changes, invalid = parse_customers(fetched.page.items)
    with services.db.transaction() as session:
        run = paged_runs.lock_at(session, BackfillRun, run_id, fetched.url)
        if run is None:
            return
        paged_runs.send_next(services, BACKFILL_PAGE, run_id, fetched)
        changed = mirror.apply_customers(session, fetched.org_id, changes)
        run.customers += len(changes)
        run.invalid += invalid
        paged_runs.advance(run, fetched)
    PAGES.labels("backfill").inc()
    services.db.refresh_statistics("customers", "outbox", only_if_stale=True)
    if changed:
        services.kicks.kick(DELIVERY_FLUSH, fetched.org_id)


_CUSTOMER_PAGE = TypeAdapter(list[CustomerRecord])


def parse_customers(items: list[dict[str, Any]]) -> tuple[list[mirror.CustomerChange], int]:
    """Valid customers as changes, and how many records could not be read (logged by id)."""
    try:
        records = _CUSTOMER_PAGE.validate_python(items)  # one call for the page: the usual case
    except ValidationError:
        pass  # some record is unreadable: find it, keep the rest
    else:
        return [mirror.change_from_record(record) for record in records], 0
    changes: list[mirror.CustomerChange] = []
    invalid = 0
    for item in items:
        try:
            changes.append(mirror.change_from_record(CustomerRecord.model_validate(item)))
        except ValidationError as exc:
            invalid += 1
            ident = item.get("id") if isinstance(item, dict) else None
            log.warning("unreadable customer %r: %s", ident, summary(exc, limit=1))
    return changes, invalid


def progress(run: BackfillRun | None) -> dict[str, Any] | None:
    """What GET /api/orgs/<orgId> and `loke-sync backfill --follow` show."""
    if run is None:
        return None
    end = run.finished_at or utcnow()
    elapsed = max((end - run.started_at).total_seconds(), 1e-3)
    return {
        "id": run.id,
        "status": run.status,
        "pages": run.pages,
        "customers": run.customers,
        "invalid": run.invalid,
        "customersPerSecond": round(run.customers / elapsed, 1),
        "startedAt": run.started_at.isoformat(),
        "finishedAt": run.finished_at.isoformat() if run.finished_at else None,
        "lastError": run.last_error,
    }


def latest_run(session: Session, org_id: str) -> BackfillRun | None:
    return session.scalars(
        select(BackfillRun)
        .where(BackfillRun.org_id == org_id)
        .order_by(BackfillRun.id.desc())
        .limit(1)
    ).first()
