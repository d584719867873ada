"""Liveness and readiness for load balancers and orchestrators (no credentials needed), and
Prometheus metrics (behind METRICS_TOKEN when it is set)."""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import text

from app.core.metrics import exposition
from app.core.services import current_services

log = logging.getLogger(__name__)

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Response:
    """The process answers: nothing more is checked."""
    return jsonify({"status": "ok"})


@health.get("/metrics")
def metrics() -> Response:
    """Prometheus text format: this machine's processes and the shared state (see
    `app.core.metrics`). With METRICS_TOKEN set it needs `Authorization: Bearer METRICS_TOKEN`
    (checked before anything is read: the gauges query the database); without, it is open and
    must be kept off the public network."""
    services = current_services()
    expected = services.settings.metrics_token
    if expected and not _bearer_is(expected):
        refused = Response("a valid Authorization: Bearer METRICS_TOKEN is required\n", 401)
        refused.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
    body, content_type = exposition(services, current_app.extensions["metrics_state"])
    return Response(body, content_type=content_type)


def _bearer_is(expected: str) -> bool:
    header = request.headers.get("Authorization", "")
    # Bytes, not str: compare_digest refuses a str with non-ASCII characters (a 500).
    sent = header.removeprefix("Bearer ").encode() if header.startswith("Bearer ") else b""
    return hmac.compare_digest(sent, expected.encode())


@health.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when the database and the broker both answer: webhooks can be stored and queued."""
    services = current_services()
    checks: dict[str, str] = {}
    try:
        with services.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("readiness: database: %s", exc)
        checks["database"] = "unavailable"
    try:
        services.dispatcher.ping()
        checks["broker"] = "ok"
    except Exception as exc:
        log.warning("readiness: broker: %s", exc)
        checks["broker"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ok" if ready else "unavailable", "checks": checks}), (
        200 if ready else 503
    )
