"""Metrics and structured logs for every process."""

from __future__ import annotations

from flask import Flask

from app.metrics import StateCollector
from app.services import Services


def init_app(app: Flask, services: Services) -> None:
    """Wire metrics (and the shared-state gauges /metrics serves) into one process's app."""
    app.extensions["metrics_state"] = StateCollector(services)
