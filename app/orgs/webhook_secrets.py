"""Each connected organization's webhook secrets, decrypted once and kept for a few seconds.

The receiver needs them on every request; a short cache spares a query and a decryption per
webhook, and a disconnect is honoured within the TTL. After a rotation an organization has two:
the new one, and the one LOKE signed with before, accepted until its grace ends. The grace is
checked against the clock on every request, never frozen into the cache.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select

from app.core.secrets_box import SecretBox
from app.store.db import Database, utcnow
from app.store.models import Organization

MAX_ENTRIES = 10_000  # unknown org ids are cached too; this bounds a flood of them
# A signature that fails reads the secrets again if they were read longer ago than this (so a
# flood of forgeries costs at most one query a second per organization and process); a
# rotation waits this long before LOKE hears of the new secret, so that every process that
# cached the old one reads the new one before a webhook signed with it can arrive.
RECHECK_AFTER_SECONDS = 1.0


@dataclass(frozen=True)
class SigningSecrets:
    """The secrets that may sign an organization's webhooks."""

    current: bytes
    previous: bytes | None = None
    previous_until: dt.datetime | None = None

    def accepted(self) -> tuple[bytes, ...]:
        """The current secret, and the previous one while its grace lasts."""
        if self.previous is None or self.previous_until is None:
            return (self.current,)
        return (self.current, self.previous) if utcnow() < self.previous_until else (self.current,)


class WebhookSecrets:
    """The receiver's cache of webhook secrets, by organization."""

    def __init__(self, db: Database, box: SecretBox, ttl_seconds: float = 5.0) -> None:
        self._db = db
        self._box = box
        self._ttl = ttl_seconds
        # org id -> (secrets or None when not connected, monotonic time they were read)
        self._cache: dict[str, tuple[SigningSecrets | None, float]] = {}
        self._lock = threading.Lock()

    def get(self, org_id: str, max_age_seconds: float | None = None) -> SigningSecrets | None:
        """The secrets of a connected organization, or None if it is not connected: from the
        cache unless read longer than `max_age_seconds` ago (default: the TTL)."""
        now = time.monotonic()
        cached = self._cache.get(org_id)
        max_age = self._ttl if max_age_seconds is None else max_age_seconds
        if cached is not None and now - cached[1] < max_age:
            return cached[0]
        with self._db.engine.connect() as connection:
            row = connection.execute(
                select(
                    Organization.webhook_secret_enc,
                    Organization.webhook_secret_previous_enc,
                    Organization.webhook_secret_previous_until,
                ).where(Organization.id == org_id, Organization.connected)
            ).first()
        found = None
        if row is not None and row.webhook_secret_enc:
            previous = row.webhook_secret_previous_enc
            found = SigningSecrets(
                current=self._box.decrypt(row.webhook_secret_enc).encode(),
                previous=self._box.decrypt(previous).encode() if previous else None,
                previous_until=row.webhook_secret_previous_until,
            )
        with self._lock:
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            self._cache[org_id] = (found, now)
        return found

    def recheck(self, org_id: str) -> SigningSecrets | None:
        """`get`, read again unless read within RECHECK_AFTER_SECONDS: after a signature that
        none of the cached secrets made (another process may have rotated them)."""
        return self.get(org_id, max_age_seconds=RECHECK_AFTER_SECONDS)

    def forget(self, org_id: str) -> None:
        """Drop the organization's cached secret (it was connected, changed or disconnected)."""
        self._cache.pop(org_id, None)
