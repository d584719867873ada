"""Each connected organization's webhook secret, decrypted once and kept for a few seconds.

The receiver needs it on every request; a short cache spares a query and a decryption per
webhook, and a disconnect is honoured within the TTL.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from app.core.secrets_box import SecretBox
from app.store.db import Database
from app.store.models import Organization

MAX_ENTRIES = 10_000  # unknown org ids are cached too; this bounds a flood of them


class WebhookSecrets:
    """The receiver's cache of webhook secrets, by organization."""

    def __init__(self, db: Database, box: SecretBox, ttl_seconds: float = 5.0) -> None:
        self._db = db
        self._box = box
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[bytes | None, float]] = {}
        self._lock = threading.Lock()

    def get(self, org_id: str) -> bytes | None:
        """The secret of a connected organization, or None if it is not connected."""
        now = time.monotonic()
        cached = self._cache.get(org_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        with self._db.engine.connect() as connection:
            stored = connection.execute(
                select(Organization.webhook_secret_enc).where(
                    Organization.id == org_id, Organization.connected
                )
            ).scalar()
        secret = self._box.decrypt(stored).encode() if stored else None
        with self._lock:
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            self._cache[org_id] = (secret, now + self._ttl)
        return secret

    def forget(self, org_id: str) -> None:
        """Drop the organization's cached secret (it was connected, changed or disconnected)."""
        self._cache.pop(org_id, None)
