"""Connecting an organization (its destination, lists and subscription) and disconnecting it."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.backfill import payment_history
from app.backfill import runs as backfill_runs
from app.core.services import Services
from app.core.validation import NO_NUL, is_list_id
from app.delivery import destinations
from app.delivery.destinations.base import (
    DestinationConfig,
    DestinationContext,
    DestinationRefused,
    RetryableDeliveryError,
)
from app.lists import runs as list_runs
from app.loke.client import LokeClient
from app.orgs.subscriptions import subscribe
from app.store.db import utcnow
from app.store.models import (
    BackfillRun,
    CrmContact,
    CrmList,
    Customer,
    CustomerList,
    DeadLetter,
    DeliveryConflict,
    DeliveryState,
    InboxEvent,
    ListMember,
    ListSyncRun,
    Organization,
    OutboxEntry,
    Payment,
)

CHECK_TIMEOUT_SECONDS = 10.0  # connecting waits this long at most for the CRM's check


class InvalidRequest(ValueError):
    """The caller's input is wrong; the message says what to change."""


class DestinationUnavailable(RuntimeError):
    """The CRM could not be reached to check the destination: nothing was changed."""


class OrgRequest(BaseModel):
    """The body of PUT /api/orgs/<orgId>."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Annotated[str, Field(max_length=255), NO_NUL] | None = None
    destination: dict[str, Any] | None = None
    lists: list[Any] | None = Field(None, max_length=1000)
    list_sync_interval_seconds: int | None = Field(
        None, alias="listSyncIntervalSeconds", ge=60, le=7 * 24 * 3600
    )
    # Days, an ISO date, or null (all): checked by payment_history.parse; null differs from
    # leaving it out (the model's fields_set tells them apart).
    payment_history_since: Any = Field(None, alias="paymentHistorySince")


def connect(services: Services, loke: LokeClient, org_id: str, body: object) -> bool:
    """Create or update an organization; on first connect subscribe its webhooks at LOKE.

    Returns True when this call connected it. The new webhook secret is stored before LOKE
    hears of it, so no signed webhook can ever arrive that we could not verify.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    request = OrgRequest.model_validate(body)
    config = destinations.parse_config(request.destination) if request.destination else None
    if config is not None:
        config = _prepared(services, org_id, config)
    history = None
    if "payment_history_since" in request.model_fields_set:
        try:
            history = payment_history.parse(request.payment_history_since)
        except payment_history.InvalidHistory as exc:
            raise InvalidRequest(str(exc)) from None
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
                raise InvalidRequest(f"destination.{config.secret_name()} is required")
            new_destination = org.destination != config.model_dump(by_alias=True, mode="json")
            org.destination = config.model_dump(by_alias=True, mode="json")
        if request.name is not None:
            org.name = request.name
        if request.lists is not None:
            org.lists = sorted(set(request.lists))
        if request.list_sync_interval_seconds is not None:
            org.list_sync_interval_seconds = request.list_sync_interval_seconds
        if history is not None:
            org.payment_history = history
        org.updated_at = now
        if config is not None and new_destination:
            _new_destination(session, org_id)
        if request.lists is not None:
            list_runs.cancel_unchosen(session, org)
    if first_connect:
        # The reconciliation watermark starts now: the backfill covers everything before.
        with services.db.transaction() as session:
            org = session.get(Organization, org_id, with_for_update=True)
            if org is None:  # purged by a concurrent DELETE: nothing left to subscribe
                return first_connect
            org.reconciled_until, org.reconciled_at = now, now
        subscribe(services, loke, org_id)
        backfill_runs.start(services, org_id)
    return first_connect


def _prepared(services: Services, org_id: str, config: DestinationConfig) -> DestinationConfig:
    """The destination checked with the CRM (credentials, what it must hold) and completed
    with what the CRM said; the secret is the one given, else the one stored."""
    secret = config.secret
    if secret is None:
        with services.db.transaction() as session:
            org = session.get(Organization, org_id)
            stored = org.destination_secret_enc if org is not None else None
            if stored is None or org is None or org.destination.get("type") != config.type:
                raise InvalidRequest(f"destination.{config.secret_name()} is required")
        secret = services.box.decrypt(stored)
    context = DestinationContext(
        org_id, CHECK_TIMEOUT_SECONDS, services.http, services.db, services.settings
    )
    try:
        prepared = destinations.build(config, secret, context).prepare()
    except DestinationRefused as exc:
        raise InvalidRequest(str(exc)) from None
    except RetryableDeliveryError as exc:
        raise DestinationUnavailable(f"could not reach the CRM to check it: {exc.reason}") from None
    return prepared.model_copy(update={"secret": config.secret})


def _new_destination(session: Session, org_id: str) -> None:
    """Another CRM, portal or token: what the old one told us is forgotten, and a pause for
    the old one's sake (its token rejected, say) is lifted."""
    for model in (CrmContact, CrmList, DeliveryConflict):
        session.execute(delete(model).where(model.org_id == org_id))
    state = session.get(DeliveryState, org_id, with_for_update=True)
    if state is not None:
        state.paused_until = state.unreachable_since = state.pause_reason = None
        state.consecutive_failures = 0


def disconnect(services: Services, loke: LokeClient, org_id: str, purge: bool) -> bool:
    """Stop syncing: delete the LOKE subscription and, with purge, everything stored."""
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is None:
            return False
        org.connected = False
        org.updated_at = utcnow()
        list_runs.cancel_unchosen(session, org)
    loke.delete_subscription(org_id, services.settings.webhook_ref)
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is not None:
            org.subscription_status = "deleted"
            org.subscription_error = None
        if purge:
            stored = (
                Customer, Payment, InboxEvent, DeadLetter, OutboxEntry, DeliveryState, BackfillRun,
                CustomerList, ListMember, ListSyncRun, CrmContact, CrmList, DeliveryConflict,
            )  # fmt: skip
            for model in stored:
                session.execute(delete(model).where(model.org_id == org_id))
            session.execute(delete(Organization).where(Organization.id == org_id))
    return True
