"""What LOKE last said an organization's customer lists are, kept a minute in each web process.

The organization page refreshes every 5 seconds while a backfill runs, and asking LOKE at each
refresh held a web worker (one of those LOKE's webhooks need) for as long as LOKE took. Lists
change rarely and have no webhooks, so an answer a minute old serves as well. When LOKE cannot
be reached, the lists last read are shown with the reason, and LOKE is asked again
FAILED_TTL_SECONDS later, not at every refresh.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from flask import current_app

from app.loke.client import LokeClient
from app.loke.errors import LokeError
from app.store.db import utcnow

TTL_SECONDS = 60.0
FAILED_TTL_SECONDS = 15.0
MAX_ORGS = 1000  # organizations kept; past that the one read longest ago goes


@dataclass(frozen=True)
class KnownLists:
    """LOKE's lists of an organization, as last read."""

    lists: list[dict[str, Any]] | None  # None: not read from LOKE by this process yet
    read_at: dt.datetime | None
    error: str | None = None  # the last read failed, and why (`lists` are the read before)
    fresh: bool = False  # read from LOKE by this very call


@dataclass(frozen=True)
class _Entry:
    known: KnownLists
    tried_at: float  # time.monotonic() of the last read, failed or not


class LokeListsCache:
    """Each organization's LOKE lists, read again once TTL_SECONDS have passed."""

    def __init__(
        self, ttl_seconds: float = TTL_SECONDS, failed_ttl_seconds: float = FAILED_TTL_SECONDS
    ) -> None:
        self._ttl = ttl_seconds
        self._failed_ttl = failed_ttl_seconds
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, loke: LokeClient, org_id: str) -> KnownLists:
        """The organization's lists: as kept while they are recent enough, else read now."""
        with self._lock:
            entry = self._entries.get(org_id)
        if entry is not None:
            ttl = self._failed_ttl if entry.known.error else self._ttl
            if time.monotonic() - entry.tried_at < ttl:
                return replace(entry.known, fresh=False)
        try:
            lists = list(loke.iterate(f"/organizations/{org_id}/customer-lists"))
            known = KnownLists(lists, utcnow(), None, fresh=True)
        except LokeError as exc:
            last = entry.known if entry is not None else KnownLists(None, None)
            known = KnownLists(last.lists, last.read_at, str(exc))
        with self._lock:
            self._entries.pop(org_id, None)  # re-inserted last: the dict is oldest first
            self._entries[org_id] = _Entry(known, time.monotonic())
            while len(self._entries) > MAX_ORGS:
                del self._entries[next(iter(self._entries))]
        return known

    def forget(self, org_id: str) -> None:
        """Read the organization's lists from LOKE next time (it was disconnected)."""
        with self._lock:
            self._entries.pop(org_id, None)


def current_lists_cache() -> LokeListsCache:
    """The current process's cache of LOKE lists (inside an app context)."""
    cache: LokeListsCache = current_app.extensions["loke_lists"]
    return cache
