"""The long-lived objects of one process, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
import requests
from flask import current_app

from app.core.config import Settings
from app.core.dispatch import Dispatcher
from app.core.kicks import Kicks
from app.core.secrets_box import SecretBox
from app.store.db import Database


@dataclass
class Services:
    """Settings, the database, the secret box, task dispatch, Redis and one HTTP session: what
    every plain function of the service is handed."""

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
    """A client for the shared Redis, if there is one (kicks, the LOKE token, beat's lock)."""
    if url is None:
        return None
    # Short timeouts: a kick must never hold a webhook answer for long.
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def current_services() -> Services:
    """The current process's services (inside an app context, as every task and request runs)."""
    services: Services = current_app.extensions["loke_sync"]
    return services
