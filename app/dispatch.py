"""How plain code asks for background work, without knowing Celery; and coalesced "kicks".

A kick says "there is work for <name>": the inbox or one organization's outbox. Many kicks in a
burst become one task, because the task drains everything pending when it starts. A Redis key
marks a task as sent-but-not-started; the task deletes it first thing, so a kick that finds the
key set is covered by a task that has not looked yet. Without Redis every kick sends a task.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import redis

log = logging.getLogger(__name__)

KICK_TTL_SECONDS = 60  # a lost task stops suppressing kicks after this; sweepers cover the gap


class BrokerUnavailable(ConnectionError):
    """The broker could not take a task: it is down or out of reach (not the task's fault)."""


class Dispatcher(Protocol):
    def send(
        self,
        task_name: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        countdown: float = 0,
    ) -> None:
        """Enqueue a task by its stable name; raises BrokerUnavailable when the broker cannot
        take it."""

    def ping(self) -> None:
        """Raise if the broker cannot be reached."""


class Kicks:
    def __init__(self, dispatcher: Dispatcher, redis_client: redis.Redis | None) -> None:
        self._dispatcher = dispatcher
        self._redis = redis_client

    def kick(self, task_name: str, *args: str) -> None:
        """Make sure a `task_name(*args)` runs after this moment."""
        self._send_once("now", task_name, args, 0)

    def kick_later(self, task_name: str, *args: str, countdown: float) -> None:
        """Make sure a `task_name(*args)` runs in about `countdown` seconds (one per target:
        tasks that all wait for the same rate limit or retry must not multiply)."""
        self._send_once("later", task_name, args, countdown, ttl=int(countdown) + KICK_TTL_SECONDS)

    def started(self, task_name: str, *args: str, kick: str = "now") -> None:
        """Called by a kicked task before it looks for work, with the `kick` keyword it was
        sent with: kicks of that kind from now on must send a new task."""
        if self._redis is None:
            return
        try:
            self._redis.delete(self._key(kick, task_name, args))
        except redis.RedisError:
            # The keys expire on their own; until then sweepers re-kick what is left.
            log.warning("could not clear kick %s", task_name)

    def _send_once(
        self,
        kick: str,
        task_name: str,
        args: tuple[str, ...],
        countdown: float,
        ttl: int = KICK_TTL_SECONDS,
    ) -> None:
        key = self._key(kick, task_name, args)
        if self._redis is not None and not self._redis.set(key, 1, nx=True, ex=ttl):
            return
        try:
            self._dispatcher.send(task_name, args, {"kick": kick}, countdown=countdown)
        except Exception:
            if self._redis is not None:
                self._redis.delete(key)  # so the next kick tries again
            raise

    @staticmethod
    def _key(when: str, task_name: str, args: tuple[str, ...]) -> str:
        return f"loke-sync:kick:{when}:" + ":".join((task_name, *args))
