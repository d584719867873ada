"""What an organization's status shows (GET /api/orgs/<orgId>, the dashboard, the CLI)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.backfill import runs as backfill_runs
from app.lists import report as list_report
from app.store.db import utcnow
from app.store.models import Customer, DeadLetter, DeliveryState, Organization, OutboxEntry


def status(session: Session, org: Organization) -> dict[str, Any]:
    """What GET /api/orgs/<orgId> shows: never a secret."""
    pending = session.execute(
        select(
            func.count(), func.min(OutboxEntry.changed_at), func.min(OutboxEntry.source_at)
        ).where(OutboxEntry.org_id == org.id, OutboxEntry.pending)
    ).one()
    state = session.get(DeliveryState, org.id)
    now = utcnow()
    dead = session.scalar(
        select(func.count()).where(DeadLetter.org_id == org.id, DeadLetter.replayed_at.is_(None))
    )
    customers = session.scalar(select(func.count()).where(Customer.org_id == org.id))
    return {
        "id": org.id,
        "name": org.name,
        "connected": org.connected,
        "destination": org.destination,
        "lists": org.lists,
        "listSyncIntervalSeconds": org.list_sync_interval_seconds,
        "subscription": {
            "status": org.subscription_status,
            "error": org.subscription_error,
            "checkedAt": _iso(org.subscription_checked_at),
        },
        "customers": customers,
        "backfill": backfill_runs.progress(backfill_runs.latest_run(session, org.id)),
        "listSync": list_report.summaries_of(session, org.id),
        "reconciliation": {
            "until": _iso(org.reconciled_until),
            "at": _iso(org.reconciled_at),
        },
        "delivery": {
            "backlog": pending[0],
            "oldestPendingSeconds": (now - pending[1]).total_seconds() if pending[1] else 0,
            "lagSeconds": (now - pending[2]).total_seconds() if pending[2] else 0,
            "deadLetters": dead,
            "lastSuccessAt": _iso(state.last_success_at) if state else None,
            "pausedUntil": _iso(state.paused_until) if state else None,
            "lastError": state.last_error if state else None,
        },
        "createdAt": _iso(org.created_at),
        "updatedAt": _iso(org.updated_at),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
