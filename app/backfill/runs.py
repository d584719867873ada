"""Backfill runs: one full read of an organization's customers, then of its payment history, at
a time; started, resumed from its checkpoint after a failure, and reported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.backfill import payment_history
from app.core.services import Services
from app.core.task_names import BACKFILL_PAGE
from app.store.db import utcnow
from app.store.models import BackfillRun, Organization

# sort=created keeps pages stable while customers change; sort=updated would shift them.
FIRST_PAGE = "/organizations/{org_id}/customers?sort=created"


class NotConnected(LookupError):
    """The organization is not connected: nothing of it may be read from LOKE."""


@dataclass(frozen=True)
class Started:
    """The backfill run a start asked for."""

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
                with_payments, payments_from = payment_history.since(org.payment_history, now)
                run = BackfillRun(
                    org_id=org_id,
                    status="running",
                    next_url=FIRST_PAGE.format(org_id=org_id),
                    pages=0,
                    customers=0,
                    invalid=0,
                    attempts=0,
                    started_at=now,
                    phase="customers",
                    with_payments=with_payments,
                    payments_from=payments_from,
                    payments=0,
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
        "phase": run.phase,
        "customers": run.customers,
        "payments": run.payments,
        "paymentsSince": run.payments_from.isoformat() if run.payments_from else None,
        "withPayments": run.with_payments,
        "invalid": run.invalid,
        "customersPerSecond": round(run.customers / elapsed, 1),
        "startedAt": run.started_at.isoformat(),
        "finishedAt": run.finished_at.isoformat() if run.finished_at else None,
        "lastError": run.last_error,
        "attempts": run.attempts,  # failed tries of the page at its checkpoint
    }


def latest_run(session: Session, org_id: str) -> BackfillRun | None:
    """The organization's most recent backfill run, if any."""
    return session.scalars(
        select(BackfillRun)
        .where(BackfillRun.org_id == org_id)
        .order_by(BackfillRun.id.desc())
        .limit(1)
    ).first()
