"""Beat's scheduler: redbeat, made to outlive a restart or a flush of its Redis.

redbeat keeps beat's lock and the schedule entries in Redis, and beat exits when it cannot
extend the lock. After Redis restarts empty or is flushed, nobody holds the lock and the entries
are gone, so the sweeps that re-send lost tasks would stop exactly when they are needed. This
scheduler waits out an unreachable Redis, installs the entries again when they have vanished and
takes the free lock back. If another beat took the lock meanwhile, that one is the active beat
and this one exits, as before.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redbeat.schedulers import RedBeatScheduler, get_redis
from redis.exceptions import LockNotOwnedError

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0  # how soon to try again while Redis is unreachable


class ResilientRedBeatScheduler(RedBeatScheduler):  # type: ignore[misc]
    """RedBeatScheduler that recovers its lock and static entries after Redis lost them."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One beat tick, recovering the schedule and the lock if Redis lost them."""
        try:
            if not get_redis(self.app).exists(self.app.redbeat_conf.statics_key):
                log.warning("beat: the schedule is gone from Redis; installing it again")
                self.setup_schedule()
            interval: float = super().tick(*args, **kwargs)
            return interval
        except LockNotOwnedError:
            if self.lock is None or not self.lock.acquire(blocking=False):
                raise  # another beat holds the lock now: it is the active one
            log.warning("beat: the lock was lost with Redis's data; took it again")
            return RETRY_SECONDS
        except (redis.ConnectionError, redis.TimeoutError):
            log.warning("beat: Redis unreachable; trying again in %s s", RETRY_SECONDS)
            return RETRY_SECONDS
