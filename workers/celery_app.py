"""What worker and beat processes add to the Celery app every process has (`app.core.broker`):
the task modules, the beat schedule and its scheduler, logs carrying each task's context (and
quiet about idle periodic tasks), and the metrics port."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init
from prometheus_client import start_http_server

from app.core import logs
from app.core.config import Settings
from app.core.metrics import process_registry
from workers.schedule import beat_schedule

TASK_MODULES = [
    "tasks.events",
    "tasks.delivery",
    "tasks.backfill",
    "tasks.lists",
    "tasks.retention",
    "tasks.activity",
]


def configure_logging(settings: Settings, celery_level: int | None = None) -> None:
    """The process's log lines (`app.core.logs`) at LOG_LEVEL, or at Celery's `--loglevel` if
    that says more (its default, WARNING, never does); Celery's own lines about the periodic
    tasks at DEBUG: they run every few seconds and log when they did something."""
    level = logging.getLevelNamesMapping()[settings.log_level]
    if celery_level is not None:
        level = min(level, celery_level)
    periodic = {entry["task"] for entry in beat_schedule(settings).values()}
    logs.configure(logging.getLevelName(level), quiet_tasks=periodic)


def configure(celery: Celery[Any], settings: Settings) -> None:
    """Make `celery` ready to run as a worker or as beat."""
    celery.conf.update(include=TASK_MODULES, beat_schedule=beat_schedule(settings))
    if settings.shared_redis_url:
        # Beat keeps its state and a lock in Redis: a second beat started by mistake waits
        # for the lock instead of doubling every schedule, and no local file forks state.
        # (redbeat's scheduler, made to outlive a restarted or flushed Redis.)
        celery.conf.beat_scheduler = "workers.beat_scheduler:ResilientRedBeatScheduler"
        celery.conf.redbeat_redis_url = settings.shared_redis_url
        celery.conf.redbeat_key_prefix = "loke-sync:redbeat:"
        # A standby beat takes over within a minute of the active one dying.
        celery.conf.redbeat_lock_timeout = 60
        celery.conf.beat_max_loop_interval = 10
    else:
        celery.conf.beat_schedule_filename = str(settings.var_dir / "celerybeat-schedule")

    @setup_logging.connect(weak=False)
    def _logs(loglevel: int | None = None, **_: object) -> None:
        # Connected, so Celery leaves logging to us: the same lines as the web.
        configure_logging(settings, loglevel)

    @task_prerun.connect(weak=False)
    def _task_context(task_id: str | None = None, **_: object) -> None:
        logs.set_context(task_id=task_id, org_id=None, event_type=None, request_id=None)

    @task_postrun.connect(weak=False)
    def _task_done(**_: object) -> None:
        logs.set_context(task_id=None)

    @worker_init.connect(weak=False)
    def _serve_metrics(**_: object) -> None:
        # For machines with workers and no web process: Prometheus scrapes the worker here.
        if settings.worker_metrics_port:
            start_http_server(settings.worker_metrics_port, registry=process_registry())
