"""The one factory: web, worker and beat processes, and every CLI command, start here."""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.core.broker import celery_init_app
from app.core.config import Settings, load_settings
from app.core.dispatch import Dispatcher
from app.core.metrics import StateCollector
from app.core.secrets_box import SecretBox
from app.core.services import Services, connect_redis
from app.ingest.background_kicks import BackgroundKicks
from app.lists.loke_lists import LokeListsCache
from app.loke.client import build_loke_client, token_cache
from app.orgs.webhook_secrets import WebhookSecrets
from app.store.db import Database
from app.web import admin, dashboard, errors, health, receiver
from app.web.ids import IdConverter

MAX_WEBHOOK_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None, dispatcher: Dispatcher | None = None) -> Flask:
    """The Flask app of one process, with its services in `app.extensions` (a `dispatcher` given
    replaces Celery: fast tests record what would be sent)."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_WEBHOOK_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if settings.trusted_proxy_hops:
        # Only the operator knows how many proxies there are; trusting a header nobody
        # rewrites would let any client choose its own address (and dodge the guess limit).
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
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
        dispatcher = celery_init_app(app, settings)
    db = Database(settings.sqlalchemy_url)
    box = SecretBox(settings.required_secret_key, previous=settings.secret_key_previous)
    services = Services(settings, db, box, dispatcher, connect_redis(settings.shared_redis_url))
    app.extensions["loke_sync"] = services
    app.extensions["webhook_secrets"] = WebhookSecrets(db, box)
    app.extensions["background_kicks"] = BackgroundKicks(services.kicks)
    tokens = token_cache(services)
    app.extensions["loke_client"] = build_loke_client(services, tokens)  # tasks, the CLI
    app.extensions["web_loke_client"] = build_loke_client(services, tokens, web=True)
    app.extensions["loke_lists"] = LokeListsCache()
    app.extensions["metrics_state"] = StateCollector(services)

    app.url_map.converters["id"] = IdConverter  # before the routes that use it
    errors.register(app)
    app.register_blueprint(receiver.receiver)
    app.register_blueprint(admin.admin)
    app.register_blueprint(health.health)
    app.register_blueprint(dashboard.dashboard)
    return app
