"""Our webhook subscription at LOKE: put it (on connect, on reset) and check it daily, repairing
what drifted."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.core.services import Services
from app.loke.client import LokeClient
from app.loke.errors import LokeError
from app.loke.records import HANDLED_EVENTS
from app.store.db import utcnow
from app.store.models import Organization

log = logging.getLogger(__name__)

WEBHOOK_EVENTS = sorted(HANDLED_EVENTS)


def webhook_url(services: Services, org_id: str) -> str:
    """Where LOKE sends the organization's webhooks: our receiver under PUBLIC_URL."""
    return f"{services.settings.public_url.rstrip('/')}/webhooks/loke/{org_id}"


def subscribe(
    services: Services, loke: LokeClient, org_id: str, *, raise_refusal: bool = False
) -> bool:
    """PUT our subscription at LOKE (an upsert by WEBHOOK_REF, safe to repeat); note the result.

    False when LOKE refused (or the organization is not connected); with `raise_refusal`,
    LOKE's refusal is raised instead, once noted (a first connect undoes itself on it)."""
    settings = services.settings
    with services.db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None or not org.connected:
            return False
        secret = services.box.decrypt(org.webhook_secret_enc)
    refused = None
    try:
        loke.put_subscription(
            org_id, settings.webhook_ref, webhook_url(services, org_id), WEBHOOK_EVENTS, secret
        )
    except LokeError as exc:
        refused = exc
        log.error("subscription for org %s failed: %s", org_id, exc)
    error = str(refused) if refused is not None else None
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is not None:
            org.subscription_status = "error" if error else "ok"
            org.subscription_error = error
            org.subscription_checked_at = utcnow()
    if refused is not None and raise_refusal:
        raise refused
    return refused is None


@dataclass(frozen=True)
class Checked:
    """What the check found for one organization."""

    org_id: str
    state: str  # ok | repaired | error
    detail: str | None = None


def drift(services: Services, org_id: str, at_loke: list[dict[str, Any]]) -> str | None:
    """What differs between LOKE's subscriptions and ours, or None when it is intact."""
    ours = [s for s in at_loke if s.get("ref") == services.settings.webhook_ref]
    if not ours:
        return "missing"
    if ours[0].get("url") != webhook_url(services, org_id):
        return f"url is {ours[0].get('url')!r}"
    if sorted(ours[0].get("events") or []) != WEBHOOK_EVENTS:
        return f"events are {ours[0].get('events')!r}"
    return None


def check_one(services: Services, loke: LokeClient, org_id: str) -> Checked:
    """Compare the organization's subscription at LOKE with ours; put ours back if it drifted."""
    try:
        problem = drift(services, org_id, loke.subscriptions(org_id))
    except LokeError as exc:
        _record(services, org_id, "error", str(exc))
        return Checked(org_id, "error", str(exc))
    if problem is None:
        _record(services, org_id, "ok", None)
        return Checked(org_id, "ok")
    log.warning("subscription of %s drifted (%s); repairing", org_id, problem)
    repaired = subscribe(services, loke, org_id)
    return Checked(org_id, "repaired" if repaired else "error", problem)


def check_all(services: Services, loke: LokeClient) -> list[Checked]:
    """`check_one` for every connected organization (beat runs this daily)."""
    with services.db.transaction() as session:
        ids = list(session.scalars(select(Organization.id).where(Organization.connected)))
    return [check_one(services, loke, org_id) for org_id in ids]


def _record(services: Services, org_id: str, status: str, error: str | None) -> None:
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is not None:
            org.subscription_status, org.subscription_error = status, error
            org.subscription_checked_at = utcnow()
