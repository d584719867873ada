"""The Celery app, bound to the Flask app so every task runs inside an app context."""

from __future__ import annotations

from typing import Any

import kombu.exceptions
from celery import Celery, Task
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init
from flask import Flask
from kombu import Exchange, Queue
from prometheus_client import start_http_server
from sqlalchemy.exc import OperationalError

from app import logs
from app.config import Settings
from app.dispatch import BrokerUnavailable
from app.metrics import process_registry
from workers.schedule import TASK_ROUTES, QueueName, beat_schedule

# Longest countdown we ever schedule (delivery backoff cap, Retry-After cap) is an hour; Redis
# re-delivers an unacknowledged message after the visibility timeout, so it must be longer.
VISIBILITY_TIMEOUT_SECONDS = 2 * 3600


class CeleryDispatcher:
    """Sends tasks by name; gives up fast when the broker is down (the receiver answers 503)."""

    def __init__(self, celery: Celery[Any]) -> None:
        self._celery = celery

    def send(
        self,
        task_name: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        countdown: float = 0,
    ) -> None:
        try:
            self._celery.send_task(
                task_name,
                args=args,
                kwargs=kwargs,
                countdown=countdown or None,
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
            )
        except kombu.exceptions.OperationalError as exc:  # (kombu's word for "unreachable")
            raise BrokerUnavailable(f"{task_name} not sent: {exc}") from exc

    def ping(self) -> None:
        with self._celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)


def celery_init_app(app: Flask, settings: Settings) -> CeleryDispatcher:
    class FlaskTask(Task):  # type: ignore[type-arg]
        # Every task is idempotent and retries a lost database connection or a deadlock, with a
        # bound; after that its work stays pending and a beat sweeper sends it again.
        autoretry_for = (OperationalError,)
        retry_backoff = 2
        retry_backoff_max = 60
        retry_jitter = True
        max_retries = 8

        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        # Each queue bound by its own name: without an explicit exchange and routing key,
        # Celery binds every queue to the default key and a message would land in all of them.
        task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QueueName],
        task_default_queue=QueueName.EVENTS,
        task_create_missing_queues=False,
        task_routes=TASK_ROUTES,
        task_ignore_result=True,
        # Every task is idempotent, so a message is acknowledged only once its work committed,
        # and a worker killed mid-task gives its message back instead of losing it.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Tasks drain many rows each; prefetching more would park work behind a busy process.
        worker_prefetch_multiplier=1,
        task_soft_time_limit=120,
        task_time_limit=180,
        beat_schedule=beat_schedule(settings),
        include=["tasks.events", "tasks.delivery", "tasks.backfill", "tasks.lists"],
        worker_hijack_root_logger=False,
    )
    if settings.broker_url.startswith(("redis://", "rediss://")):
        celery.conf.broker_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}
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
    def _json_logs(**_: object) -> None:
        # Connected, so Celery leaves logging to us: the same JSON lines as the web.
        logs.configure(settings.log_level)

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

    celery.set_default()
    app.extensions["celery"] = celery
    return CeleryDispatcher(celery)
