"""Coalesced "kicks": many requests for the same work in a burst become one task.

A kick says "there is work for <task>": the inbox, or one organization's outbox. The task drains
everything pending when it starts, so one task covers every kick before it. A Redis key marks a
task as sent-but-not-started; the task deletes it first thing, so a kick that finds the key set
is covered by a task that has not looked yet. Without Redis every kick sends a task.
"""

from __future__ import annotations

import logging
from enum import StrEnum

import redis

from app.core.dispatch import Dispatcher

log = logging.getLogger(__name__)

KICK_TTL_SECONDS = 60  # a lost task stops suppressing kicks after this; sweepers cover the gap


class Kick(StrEnum):
    """Which kind of kick sent a task (the `kick` keyword it carries): a kick to run now, or a
    delayed one (a retry, a rate limit). Each kind has its own marker, which the task clears."""

    NOW = "now"
    LATER = "later"


class Kicks:
    """Sends kicked tasks through the dispatcher, at most one pending per task and arguments."""

    def __init__(self, dispatcher: Dispatcher, redis_client: redis.Redis | None) -> None:
        self._dispatcher = dispatcher
        self._redis = redis_client

    def kick(self, task_name: str, *args: str) -> None:
        """Make sure a `task_name(*args)` runs after this moment."""
        self._send_once(Kick.NOW, task_name, args, 0)

    def kick_later(self, task_name: str, *args: str, countdown: float) -> None:
        """Make sure a `task_name(*args)` runs in about `countdown` seconds (one per target:
        tasks that all wait for the same rate limit or retry must not multiply)."""
        ttl = int(countdown) + KICK_TTL_SECONDS
        self._send_once(Kick.LATER, task_name, args, countdown, ttl)

    def started(self, task_name: str, *args: str, sent_by: str = Kick.NOW) -> None:
        """Called by a kicked task before it looks for work, with the kind of kick that sent
        it: kicks of that kind from now on must send a new task."""
        if self._redis is None:
            return
        try:
            self._redis.delete(self._key(sent_by, task_name, args))
        except redis.RedisError:
            # The keys expire on their own; until then sweepers re-kick what is left.
            log.warning("could not clear kick %s", task_name)

    def _send_once(
        self,
        kind: Kick,
        task_name: str,
        args: tuple[str, ...],
        countdown: float,
        ttl: int = KICK_TTL_SECONDS,
    ) -> None:
        key = self._key(kind, task_name, args)
        if self._redis is not None and not self._redis.set(key, 1, nx=True, ex=ttl):
            return
        try:
            self._dispatcher.send(task_name, args, {"kick": kind.value}, countdown=countdown)
        except Exception:
            if self._redis is not None:
                self._redis.delete(key)  # so the next kick tries again
            raise

    @staticmethod
    def _key(kind: str, task_name: str, args: tuple[str, ...]) -> str:
        return f"loke-sync:kick:{kind}:" + ":".join((task_name, *args))
