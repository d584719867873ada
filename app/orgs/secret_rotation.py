"""Rotating an organization's webhook secret: a new one put at LOKE, the old one still accepted
for WEBHOOK_SECRET_GRACE_SECONDS.

The new secret is stored before LOKE hears of it (as on connect), so no webhook LOKE signs with
it can arrive that we could not verify; the old one stays valid for the deliveries LOKE signed
before, still on their way or in LOKE's retries. Only two secrets are kept: rotating again
retires the oldest at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time

from app.core.services import Services
from app.loke.client import LokeClient
from app.orgs.subscriptions import subscribe
from app.orgs.webhook_secrets import RECHECK_AFTER_SECONDS
from app.store.db import utcnow
from app.store.models import Organization

log = logging.getLogger(__name__)


class NotConnected(LookupError):
    """The organization is not connected: it has no secret to rotate."""


class RotationRefused(RuntimeError):
    """LOKE did not take the new subscription; the old secret is the current one again."""


def rotate(services: Services, loke: LokeClient, org_id: str) -> dt.datetime:
    """Give the organization a new webhook secret, at LOKE too. Returns until when the old
    one is still accepted. Raises NotConnected, or RotationRefused when LOKE refused."""
    grace = dt.timedelta(seconds=services.settings.webhook_secret_grace_seconds)
    new_enc = services.box.encrypt(secrets.token_urlsafe(32))
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is None or not org.connected:
            raise NotConnected(org_id)
        old_enc = org.webhook_secret_enc
        until = utcnow() + grace
        org.webhook_secret_enc = new_enc
        org.webhook_secret_previous_enc, org.webhook_secret_previous_until = old_enc, until
    # Every process that cached the old secret alone reads both again once this has passed,
    # before LOKE can sign anything with the new one (LOKE never retries a 401).
    time.sleep(RECHECK_AFTER_SECONDS)
    if subscribe(services, loke, org_id):  # PUTs the secret stored now: the new one
        log.info("webhook secret of org %s rotated; the old one is valid until %s", org_id, until)
        return until
    raise RotationRefused(_put_back(services, org_id, old_enc, new_enc, grace))


def _put_back(
    services: Services, org_id: str, old_enc: str, new_enc: str, grace: dt.timedelta
) -> str:
    """Make the old secret the current one again; returns why LOKE refused."""
    with services.db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is None:
            return "the organization was deleted meanwhile"
        why = org.subscription_error or "the organization was disconnected meanwhile"
        if org.webhook_secret_enc == new_enc:  # not rotated or reconnected again since
            # The new secret stays accepted for the grace too: when LOKE's answer was lost
            # (a timeout), LOKE may have taken it after all and be signing with it.
            org.webhook_secret_enc = old_enc
            org.webhook_secret_previous_enc = new_enc
            org.webhook_secret_previous_until = utcnow() + grace
    log.error("webhook secret of org %s not rotated: %s", org_id, why)
    return why
