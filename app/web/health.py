"""Liveness and readiness for load balancers and orchestrators (no credentials needed)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify
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
    `app.core.metrics`). Like /healthz it needs no token; keep it off the public network."""
    services = current_services()
    body, content_type = exposition(services, current_app.extensions["metrics_state"])
    return Response(body, content_type=content_type)


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
