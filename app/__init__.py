"""loke-crm-sync: LOKE customers, payments and lists, kept in sync one way into a CRM."""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask, current_app

from app import observability
from app.background_kicks import BackgroundKicks
from app.config import Settings, load_settings
from app.db import Database
from app.dispatch import Dispatcher
from app.loke.client import LokeClient
from app.loke.tokens import MemoryTokenCache, RedisTokenCache, TokenCache, TokenSource
from app.secrets_box import SecretBox
from app.services import Services, connect_redis
from app.webhook_secrets import WebhookSecrets

MAX_WEBHOOK_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None, dispatcher: Dispatcher | None = None) -> Flask:
    """The one factory: web, worker and beat processes all start here."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_WEBHOOK_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # The dashboard's session cookie is signed with a key derived from SECRET_KEY, never with it.
    app.secret_key = hmac.new(
        settings.required_secret_key.encode(), b"flask session v1", hashlib.sha256
    ).digest()
    app.config.update(
        SESSION_COOKIE_SECURE=not settings.public_url.startswith("http://"),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )

    if dispatcher is None:
        # Imported here because workers/ builds on app/, never the other way round.
        from workers.celery_app import celery_init_app

        dispatcher = celery_init_app(app, settings)
    db = Database(settings.sqlalchemy_url)
    box = SecretBox(settings.required_secret_key)
    services = Services(settings, db, box, dispatcher, connect_redis(settings.shared_redis_url))
    app.extensions["loke_sync"] = services
    app.extensions["webhook_secrets"] = WebhookSecrets(db, box)
    app.extensions["background_kicks"] = BackgroundKicks(services.kicks)
    app.extensions["loke_client"] = make_loke_client(services)

    from app.web import admin, dashboard, errors, health, receiver
    from app.web.ids import IdConverter

    app.url_map.converters["id"] = IdConverter  # before the routes that use it
    observability.init_app(app, services)
    errors.register(app)
    app.register_blueprint(receiver.receiver)
    app.register_blueprint(admin.admin)
    app.register_blueprint(health.health)
    app.register_blueprint(dashboard.dashboard)
    return app


def make_loke_client(services: Services) -> LokeClient:
    settings = services.settings
    cache: TokenCache = MemoryTokenCache()
    if services.redis is not None and settings.loke_client_id:
        cache = RedisTokenCache(services.redis, settings.loke_client_id)
    tokens = TokenSource(
        services.http,
        settings.loke_auth_url,
        settings.loke_client_id,
        settings.loke_client_secret,
        settings.loke_timeout_seconds,
        cache,
    )
    return LokeClient(settings.loke_api_url, tokens, services.http, settings.loke_timeout_seconds)


def loke_client() -> LokeClient:
    """The current process's LOKE client (inside an app context)."""
    found: LokeClient = current_app.extensions["loke_client"]
    return found


def services() -> Services:
    """The current process's services (inside an app context, as every task runs)."""
    found: Services = current_app.extensions["loke_sync"]
    return found
