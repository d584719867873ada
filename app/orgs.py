"""Connecting organizations: their destination, their LOKE subscription, their status."""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app import backfill, lists
from app.db import utcnow
from app.delivery import destinations
from app.events import HANDLED_EVENTS
from app.loke.client import LokeClient
from app.loke.errors import LokeError
from app.models import (
    BackfillRun,
    Customer,
    CustomerList,
    DeadLetter,
    DeliveryState,
    InboxEvent,
    ListMember,
    ListSyncRun,
    Organization,
    OutboxEntry,
    Payment,
)
from app.services import Services
from app.validation import NO_NUL, is_list_id

log = logging.getLogger(__name__)

WEBHOOK_EVENTS = sorted(HANDLED_EVENTS)


class InvalidRequest(ValueError):
    """The caller's input is wrong; the message says what to change."""


class OrgRequest(BaseModel):
    """The body of PUT /api/orgs/<orgId>."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Annotated[str, Field(max_length=255), NO_NUL] | None = None
    destination: dict[str, Any] | None = None
    lists: list[Any] | None = Field(None, max_length=1000)
    list_sync_interval_seconds: int | None = Field(
        None, alias="listSyncIntervalSeconds", ge=60, le=7 * 24 * 3600
    )


def connect(services: Services, loke: LokeClient, org_id: str, body: object) -> bool:
    """Create or update an organization; on first connect subscribe its webhooks at LOKE.

    Returns True when this call connected it. The new webhook secret is stored before LOKE
    hears of it, so no signed webhook can ever arrive that we could not verify.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    request = OrgRequest.model_validate(body)
    config = destinations.parse_config(request.destination) if request.destination else None
    for list_id in request.lists or []:
        if not is_list_id(list_id):
            raise InvalidRequest("lists must be LOKE list ids: 1 to 64 characters, no NUL")
    box = services.box
    now = utcnow()
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        first_connect = org is None or not org.connected
        if org is None:
            org = Organization(id=org_id, created_at=now, lists=[], destination={})
            session.add(org)
        if first_connect:
            org.connected = True
            org.webhook_secret_enc = box.encrypt(secrets.token_urlsafe(32))
            org.subscription_status = "pending"
        if config is None and not org.destination:
            raise InvalidRequest("destination is required to connect an organization")
        if config is not None:
            if config.secret:
                org.destination_secret_enc = box.encrypt(config.secret)
            elif org.destination_secret_enc is None:
                raise InvalidRequest("destination.secret is required")
            org.destination = config.model_dump(by_alias=True, mode="json")
        if request.name is not None:
            org.name = request.name
        if request.lists is not None:
            org.lists = sorted(set(request.lists))
        if request.list_sync_interval_seconds is not None:
            org.list_sync_interval_seconds = request.list_sync_interval_seconds
        org.updated_at = now
        if request.lists is not None:
            lists.cancel_unchosen(session, org)
    if first_connect:
        # The reconciliation watermark starts now: the backfill covers everything before.
        with services.db.transaction() as session:
            org = session.get(Organization, org_id, with_for_update=True)
            if org is None:  # purged by a concurrent DELETE: nothing left to subscribe
                return first_connect
            org.reconciled_until, org.reconciled_at = now, now
        subscribe(services, loke, org_id)
        backfill.start(services, org_id)
    return first_connect


def subscribe(services: Services, loke: LokeClient, org_id: str) -> bool:
    """PUT our subscription at LOKE (an upsert by WEBHOOK_REF, safe to repeat); note the result."""
    settings = services.settings
    with services.db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None or not org.connected:
            return False
        secret = services.box.decrypt(org.webhook_secret_enc)
    error = None
    try:
        loke.put_subscription(
            org_id,
            settings.webhook_ref,
            f"{settings.public_url.rstrip('/')}/webhooks/loke/{org_id}",
            WEBHOOK_EVENTS,
            secret,
        )
    except LokeError as exc:
        error = str(exc)
        log.error("subscription for org %s failed: %s", org_id, error)
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is not None:
            org.subscription_status = "error" if error else "ok"
            org.subscription_error = error
            org.subscription_checked_at = utcnow()
    return error is None


def disconnect(services: Services, loke: LokeClient, org_id: str, purge: bool) -> bool:
    """Stop syncing: delete the LOKE subscription and, with purge, everything stored."""
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is None:
            return False
        org.connected = False
        org.updated_at = utcnow()
        lists.cancel_unchosen(session, org)
    loke.delete_subscription(org_id, services.settings.webhook_ref)
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is not None:
            org.subscription_status = "deleted"
            org.subscription_error = None
        if purge:
            stored = (
                Customer, Payment, InboxEvent, DeadLetter, OutboxEntry, DeliveryState, BackfillRun,
                CustomerList, ListMember, ListSyncRun,
            )  # fmt: skip
            for model in stored:
                session.execute(delete(model).where(model.org_id == org_id))
            session.execute(delete(Organization).where(Organization.id == org_id))
    return True


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
        "backfill": backfill.progress(backfill.latest_run(session, org.id)),
        "listSync": lists.summaries_of(session, org.id),
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
