"""Connecting an organization (its destination, lists and subscription) and disconnecting it."""

from __future__ import annotations

import copy
import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, delete, inspect, select
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
from app.orgs import refusals
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
# A first connect subscribes within this (the CLI's full LOKE retry policy included): the sweep
# starts no backfill for an organization still subscribing (it may be undone yet).
CONNECTING_SECONDS = 300.0


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
    hears of it, so no signed webhook can ever arrive that we could not verify. A first
    connect that LOKE refuses raises `refusals.ConnectRefused` and leaves nothing behind: it
    asks LOKE before writing anything, and is undone if LOKE refuses the subscription after
    all; no backfill starts before LOKE took the subscription.
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
    if not _connected(services, org_id):
        refusals.check_at_loke(services.settings, loke, org_id)
    box = services.box
    now = utcnow()
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        first_connect = org is None or not org.connected
        before = _columns(org) if org is not None and first_connect else None
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
        # backfill, or LOKE refused a later put of the subscription) is finished by the next PUT.
        resubscribe = org.subscription_status in UNSUBSCRIBED
        no_backfill = first_connect or backfill_runs.latest_run(session, org_id) is None
        secret_enc = org.webhook_secret_enc
    if resubscribe:
        # Its outcome is the org's subscription status; only a first connect is undone by a
        # refusal (an organization connected before stays so, its error shown).
        try:
            subscribe(services, loke, org_id, raise_refusal=first_connect)
        except LokeError as exc:
            _undo(services, org_id, before, secret_enc)
            raise refusals.refusal(org_id, exc) from None
    if no_backfill:
        _start_backfill(services, org_id)
    return first_connect


def _connected(services: Services, org_id: str) -> bool:
    with services.db.transaction() as session:
        org = session.get(Organization, org_id)
        return org is not None and org.connected


def _columns(org: Organization) -> dict[str, Any]:
    """The organization's stored values, to put back if its connect is undone."""
    return {c.key: copy.deepcopy(getattr(org, c.key)) for c in inspect(Organization).column_attrs}


def _undo(services: Services, org_id: str, before: dict[str, Any] | None, secret_enc: str) -> None:
    """Undo a first connect LOKE refused: a new organization is removed with whatever the
    moments it was connected left (a list resync begun by beat, say); one known before gets
    its stored values back. Left alone if another connect or a rotation changed its secret
    meanwhile: that one is in charge now."""
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is None or org.webhook_secret_enc != secret_enc:
            return
        if before is None:
            purge_org(session, org_id)
            return
        for key, value in before.items():
            setattr(org, key, value)
        list_runs.cancel_unchosen(session, org)  # not connected: every resync begun stops
    log.warning("org %s: LOKE refused the subscription; the connect was undone", org_id)


def start_missing_backfills(services: Services) -> list[str]:
    """Start the backfill of every connected organization that never had one (a connect cut
    short before it started; the sweep calls this), once it is no longer subscribing: a first
    connect starts its backfill once LOKE took the subscription, and is undone if LOKE refused
    it. Relies on retention keeping each organization's latest run. Returns the organizations
    started."""
    recently = utcnow() - dt.timedelta(seconds=CONNECTING_SECONDS)
    subscribing = and_(
        Organization.subscription_status == "pending", Organization.updated_at > recently
    )
    with services.db.transaction() as session:
        started = select(BackfillRun.id).where(BackfillRun.org_id == Organization.id)
        missing = list(
            session.scalars(
                select(Organization.id).where(
                    Organization.connected, ~started.exists(), ~subscribing
                )
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
