"""The Celery app every process has, bound to Flask, and the dispatcher plain code sends through.

Web processes only send; worker and beat processes add their own part (`workers.celery_app`).
"""

from __future__ import annotations

from typing import Any

import kombu.exceptions
from celery import Celery, Task
from flask import Flask
from kombu import Exchange, Queue
from sqlalchemy.exc import OperationalError

from app.core.config import Settings
from app.core.dispatch import BrokerUnavailable
from app.core.queues import TASK_ROUTES, QueueName

# Redis hands an unacknowledged message to another worker after the visibility timeout, so it
# must outlast the longest countdown ever scheduled (the delivery backoff and Retry-After caps,
# an hour).
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
        """Enqueue `task_name`; raises BrokerUnavailable when the broker cannot take it."""
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
        """Raise if the broker cannot be reached within a couple of seconds."""
        with self._celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)


def celery_init_app(app: Flask, settings: Settings) -> CeleryDispatcher:
    """Create the process's Celery app, bound to `app` so that every task runs inside its app
    context, and keep it as `app.extensions["celery"]`."""

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
        worker_hijack_root_logger=False,
    )
    if settings.broker_url.startswith(("redis://", "rediss://")):
        celery.conf.broker_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}
    celery.set_default()
    app.extensions["celery"] = celery
    return CeleryDispatcher(celery)
