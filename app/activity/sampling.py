"""Sampling each organization's backlog and lag into its minute, once a minute (beat)."""

from __future__ import annotations

from sqlalchemy import select

from app.activity.lag import lags
from app.activity.minutes import record_sample
from app.core.services import Services
from app.store.db import utcnow
from app.store.models import Organization


def sample(services: Services) -> int:
    """Record the backlog and lag of every connected organization, and of any other with
    something still waiting; returns how many were sampled. One short transaction: a few rows
    per organization, whichever process runs it."""
    now = utcnow()
    with services.db.transaction() as session:
        connected = set(session.scalars(select(Organization.id).where(Organization.connected)))
        found = lags(session, now)
        found.update(lags(session, now, connected - set(found)) if connected - set(found) else {})
        for org_id, lag in sorted(found.items()):  # one lock order for every sampler
            record_sample(session, org_id, now, lag.backlog, lag.lag_seconds)
    return len(found)
