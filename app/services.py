"""The long-lived objects of one process, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
import requests

from app.config import Settings
from app.db import Database
from app.dispatch import Dispatcher, Kicks
from app.secrets_box import SecretBox


@dataclass
class Services:
    settings: Settings
    db: Database
    box: SecretBox
    dispatcher: Dispatcher
    redis: redis.Redis | None
    kicks: Kicks = field(init=False)
    http: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.kicks = Kicks(self.dispatcher, self.redis)


def connect_redis(url: str | None) -> redis.Redis | None:
    if url is None:
        return None
    # Short timeouts: a kick must never hold a webhook answer for long.
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
