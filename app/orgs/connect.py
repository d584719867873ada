"""Connecting an organization (its destination, lists and subscription) and disconnecting it."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
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
from app.loke.errors import LokeError
from app.orgs.purge import purge as purge_org
from app.orgs.subscriptions import subscribe
from app.store.db import utcnow
from app.store.models import (
    BackfillRun,
    CrmContact,
    CrmList,
    DeliveryConflict,
    DeliveryState,
    Organization,
)

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 10.0  # connecting waits this long at most for the CRM's check
UNSUBSCRIBED = ("pending", "error")  # subscription states a PUT puts right


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
            # A new connection starts afresh: no secret of an earlier one signs any more.
            org.webhook_secret_previous_enc = org.webhook_secret_previous_until = None
            org.subscription_status = "pending"
            # The reconciliation watermark starts now: the backfill covers everything before.
            org.reconciled_until, org.reconciled_at = now, now
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
        # A connect cut short (the process died before subscribing or before starting the
        # backfill, or LOKE refused the subscription) is finished by the next PUT.
        resubscribe = org.subscription_status in UNSUBSCRIBED
        no_backfill = first_connect or backfill_runs.latest_run(session, org_id) is None
    if resubscribe:
        subscribe(services, loke, org_id)  # its outcome is the org's subscription status
    if no_backfill:
        _start_backfill(services, org_id)
    return first_connect


def start_missing_backfills(services: Services) -> list[str]:
    """Start the backfill of every connected organization that never had one (a connect cut
    short before it started; the sweep calls this). Relies on retention keeping each
    organization's latest run. Returns the organizations started."""
    with services.db.transaction() as session:
        started = select(BackfillRun.id).where(BackfillRun.org_id == Organization.id)
        missing = list(
            session.scalars(
                select(Organization.id).where(Organization.connected, ~started.exists())
            )
        )
    return [org_id for org_id in missing if _start_backfill(services, org_id)]


def _start_backfill(services: Services, org_id: str) -> bool:
    try:
        backfill_runs.start(services, org_id)
    except backfill_runs.NotConnected:  # disconnected by a concurrent DELETE meanwhile
        return False
    return True


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


@dataclass(frozen=True)
class Disconnected:
    """A disconnect done here; whether LOKE deleted our subscription, and if not, why."""

    unsubscribed: bool
    loke_error: str | None = None


def disconnect(
    services: Services, loke: LokeClient, org_id: str, purge: bool
) -> Disconnected | None:
    """Stop syncing: delete the LOKE subscription and, with purge, everything stored. Done here
    whatever LOKE says (an organization that uninstalled the add-on refuses the call): our
    receiver takes no webhook of a disconnected organization anyway. None: not known."""
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is None:
            return None
        org.connected = False
        org.updated_at = utcnow()
        list_runs.cancel_unchosen(session, org)
    refused = None
    try:
        loke.delete_subscription(org_id, services.settings.webhook_ref)
    except LokeError as exc:
        refused = str(exc)
        log.warning("org %s disconnected here; LOKE refused the unsubscribe: %s", org_id, refused)
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is not None:
            org.subscription_status = "error" if refused else "deleted"
            org.subscription_error = refused
            org.subscription_checked_at = utcnow()
        if purge:
            purge_org(session, org_id)
    return Disconnected(refused is None, refused)
