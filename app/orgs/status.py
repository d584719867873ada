"""What an organization's status shows (GET /api/orgs/<orgId>, the dashboard, the CLI)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.activity.lag import lag_of
from app.backfill import payment_history
from app.backfill import runs as backfill_runs
from app.delivery.claims import batches_in_flight
from app.delivery.destinations import parse_config
from app.lists import report as list_report
from app.store.db import utcnow
from app.store.models import (
    Customer,
    DeadLetter,
    DeliveryConflict,
    DeliveryState,
    Organization,
    RateAccount,
)


def status(session: Session, org: Organization) -> dict[str, Any]:
    """What GET /api/orgs/<orgId> shows: never a secret."""
    customers = session.scalar(select(func.count()).where(Customer.org_id == org.id))
    return {
        "id": org.id,
        "name": org.name,
        "connected": org.connected,
        "destination": org.destination,
        "lists": org.lists,
        "listSyncIntervalSeconds": org.list_sync_interval_seconds,
        "paymentHistorySince": payment_history.as_json(org.payment_history),
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
        "delivery": delivery(session, org),
        "createdAt": _iso(org.created_at),
        "updatedAt": _iso(org.updated_at),
    }


def delivery(session: Session, org: Organization) -> dict[str, Any]:
    """The organization's delivery: backlog and lag (app.activity.lag), dead letters, and
    whether its CRM is reachable (`unreachableSince`, next try at `pausedUntil`) or throttling
    its account."""
    now = utcnow()
    lag = lag_of(session, org.id, now)
    dead = session.scalar(
        select(func.count()).where(DeadLetter.org_id == org.id, DeadLetter.replayed_at.is_(None))
    )
    state = session.get(DeliveryState, org.id)
    throttled_until, throttle_reason = _throttled(session, org, now)
    unreachable = state is not None and state.unreachable_since is not None
    rejected = unreachable and state is not None and state.pause_reason == "credentials"
    conflicts = session.scalar(select(func.count()).where(DeliveryConflict.org_id == org.id))
    return {
        "state": "tokenRejected"
        if rejected
        else "unreachable"
        if unreachable
        else "throttled"
        if throttled_until
        else "ok",
        "backlog": lag.backlog,
        # Since the oldest waiting change reached the service, and that change's age at LOKE
        # (its own timestamp: years for a backfilled customer nobody edited since).
        "oldestPendingSeconds": lag.oldest_pending_seconds,
        "lagSeconds": lag.lag_seconds,
        "lokeAgeSeconds": lag.loke_age_seconds,
        "inFlight": batches_in_flight(session, org.id, now),
        "deadLetters": dead,
        "conflicts": conflicts,
        "lastSuccessAt": _iso(state.last_success_at) if state else None,
        "unreachableSince": _iso(state.unreachable_since) if state else None,
        "pausedUntil": _iso(state.paused_until) if unreachable and state else None,
        "throttledUntil": _iso(throttled_until),
        "throttleReason": throttle_reason,
        "lastError": state.last_error if state else None,
    }


def _throttled(
    session: Session, org: Organization, now: dt.datetime
) -> tuple[dt.datetime | None, str | None]:
    """Until when the destination's CRM account is closed, and why."""
    try:
        account = parse_config(org.destination).account_key()
    except (ValueError, NotImplementedError):  # no destination yet, or not one we know
        return None, None
    row = session.get(RateAccount, account)
    if row is None or row.throttled_until is None or row.throttled_until <= now:
        return None, None
    return row.throttled_until, row.throttle_reason


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
