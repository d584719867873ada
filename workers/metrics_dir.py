"""Where a process tree's Prometheus metrics meet. Imported before anything imports
prometheus_client (which reads PROMETHEUS_MULTIPROC_DIR once, at import)."""

from __future__ import annotations

import os
import tempfile

from workers import stale_metrics


def ensure() -> str:
    """PROMETHEUS_MULTIPROC_DIR as configured, else a fresh directory for this process tree:
    gunicorn's workers, or a Celery worker's pool children, then count together."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not configured:
        configured = tempfile.mkdtemp(prefix="loke-sync-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = configured
    os.makedirs(configured, exist_ok=True)
    stale_metrics.remove_dead_processes_files(configured)  # a restart without a fresh tmpfs
    return configured
