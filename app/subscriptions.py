"""The daily check that every connected organization's LOKE subscription is still ours."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app import orgs
from app.db import utcnow
from app.loke.client import LokeClient
from app.loke.errors import LokeError
from app.models import Organization
from app.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checked:
    org_id: str
    state: str  # ok | repaired | error
    detail: str | None = None


def drift(services: Services, org_id: str, found: list[dict[str, Any]]) -> str | None:
    """What differs between LOKE's subscriptions and ours, or None when it is intact."""
    settings = services.settings
    ours = [s for s in found if s.get("ref") == settings.webhook_ref]
    if not ours:
        return "missing"
    expected_url = f"{settings.public_url.rstrip('/')}/webhooks/loke/{org_id}"
    if ours[0].get("url") != expected_url:
        return f"url is {ours[0].get('url')!r}"
    if sorted(ours[0].get("events") or []) != orgs.WEBHOOK_EVENTS:
        return f"events are {ours[0].get('events')!r}"
    return None


def check_one(services: Services, loke: LokeClient, org_id: str) -> Checked:
    try:
        problem = drift(services, org_id, loke.subscriptions(org_id))
    except LokeError as exc:
        _record(services, org_id, "error", str(exc))
        return Checked(org_id, "error", str(exc))
    if problem is None:
        _record(services, org_id, "ok", None)
        return Checked(org_id, "ok")
    log.warning("subscription of %s drifted (%s); repairing", org_id, problem)
    repaired = orgs.subscribe(services, loke, org_id)
    return Checked(org_id, "repaired" if repaired else "error", problem)


def check_all(services: Services, loke: LokeClient) -> list[Checked]:
    with services.db.transaction() as session:
        ids = list(session.scalars(select(Organization.id).where(Organization.connected)))
    return [check_one(services, loke, org_id) for org_id in ids]


def _record(services: Services, org_id: str, status: str, error: str | None) -> None:
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is not None:
            org.subscription_status, org.subscription_error = status, error
            org.subscription_checked_at = utcnow()
