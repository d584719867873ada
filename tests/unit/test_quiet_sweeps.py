"""A worker and beat left alone say nothing at INFO: Celery's "Task ... received/succeeded" for
the periodic sweeps and beat's "Sending due task" are DEBUG, and a periodic task logs its own
INFO line only when it did something. Tasks doing real work keep Celery's lines.

The tasks run through Celery's own tracer (`Task.apply`), which writes the lines a worker
writes, under the logging a worker configures (`workers.celery_app.configure_logging`)."""

from __future__ import annotations

import datetime as dt
import importlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, Task
from celery._state import get_current_app
from celery.app.trace import LOG_RECEIVED
from celery.beat import ScheduleEntry, Scheduler
from celery.schedules import schedule
from flask import Flask

from app.core.config import Settings
from app.core.task_names import EVENTS_DRAIN, EVENTS_SWEEP
from app.store.db import utcnow
from app.store.models import InboxEvent
from tests.conftest import RecordingDispatcher, services_of
from workers.celery_app import TASK_MODULES, configure_logging
from workers.schedule import beat_schedule

# Where Celery writes those lines (and where the fixture puts logging back as it was).
CELERY_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "celery.beat")


class WorkerLogs:
    """Configures logging as a worker does (`configure_logging`), then collects its lines (JSON:
    they go to no terminal) instead of printing them."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def configure(self, settings: Settings, celery_level: int | None = None) -> None:
        configure_logging(settings, celery_level)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(self.buffer)

    def lines(self) -> list[dict[str, Any]]:
        """What was logged since last asked."""
        text, self.buffer = self.buffer.getvalue(), io.StringIO()
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(self.buffer)
        return [json.loads(line) for line in text.splitlines() if line]


@pytest.fixture
def worker_logs(settings: Settings) -> Iterator[WorkerLogs]:
    """Logging as a worker's, put back as it was afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    filters = {name: logging.getLogger(name).filters[:] for name in CELERY_LOGGERS}
    logs = WorkerLogs()
    logs.configure(settings)
    try:
        yield logs
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, kept in filters.items():
            logging.getLogger(name).filters[:] = kept
        logging.captureWarnings(False)


@pytest.fixture(autouse=True)
def plain_celery() -> Iterator[None]:
    """The tasks (shared_task proxies) resolve to a Celery app made here, bound to no Flask app:
    one an earlier test made would run them in its own app's context, not in `app`'s."""
    previous = get_current_app()
    Celery("test-quiet-sweeps", set_as_current=True)
    try:
        yield
    finally:
        previous.set_current()


def tasks_by_name() -> dict[str, Task[Any, Any]]:
    found: dict[str, Task[Any, Any]] = {}
    for module_name in TASK_MODULES:
        module = importlib.import_module(module_name)
        found |= {task.name: task for task in vars(module).values() if isinstance(task, Task)}
    return found


def run_task(app: Flask, name: str) -> None:
    """One run of the task as a worker runs it (Celery's tracer, its log lines), in `app`."""
    with app.app_context():
        result = tasks_by_name()[name].apply()
    assert result.successful(), result.traceback


def at_info(lines: list[dict[str, Any]]) -> list[str]:
    return [f"{line['logger']}: {line['message']}" for line in lines if line["level"] == "INFO"]


def test_idle_periodic_tasks_log_nothing_at_info(
    app: Flask, settings: Settings, worker_logs: WorkerLogs
) -> None:
    periodic = sorted({entry["task"] for entry in beat_schedule(settings).values()})
    assert EVENTS_SWEEP in periodic
    for name in periodic:
        run_task(app, name)
    assert at_info(worker_logs.lines()) == []


def test_a_sweep_that_did_something_says_so_at_info(
    app: Flask, dispatcher: RecordingDispatcher, worker_logs: WorkerLogs
) -> None:
    with services_of(app).db.transaction() as session:  # a webhook whose drain was lost
        session.add(
            InboxEvent(org_id="org-1", body_sha256="0" * 64, event_type="customer.updated",
                       body="{}", status="pending", request_id="req-1",
                       received_at=utcnow() - dt.timedelta(minutes=5))
        )  # fmt: skip
    run_task(app, EVENTS_SWEEP)
    assert dispatcher.names() == [EVENTS_DRAIN]
    [said] = at_info(worker_logs.lines())
    assert said.startswith("tasks.events: events pending for 30")  # (5 minutes: 300 s)
    assert said.endswith(" s: sent a drain")


def test_tasks_doing_real_work_keep_celerys_lines(app: Flask, worker_logs: WorkerLogs) -> None:
    run_task(app, EVENTS_DRAIN)
    assert any(
        line.startswith(f"celery.app.trace: Task {EVENTS_DRAIN}[") and " succeeded in " in line
        for line in at_info(worker_logs.lines())
    )


def test_a_periodic_tasks_received_line_is_debug_too(worker_logs: WorkerLogs) -> None:
    def receive(name: str) -> None:
        # The call celery.worker.strategy makes for every task message it takes.
        context = {"id": "t-1", "name": name, "args": "()", "kwargs": "{}", "eta": None}
        logging.getLogger("celery.worker.strategy").info(LOG_RECEIVED, context,
                                                         extra={"data": context})  # fmt: skip

    receive(EVENTS_SWEEP)
    receive(EVENTS_DRAIN)
    assert at_info(worker_logs.lines()) == [
        f"celery.worker.strategy: Task {EVENTS_DRAIN}[t-1] received"
    ]


class SendsNowhere(Scheduler):
    """Beat's scheduler, whose messages go nowhere."""

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> None:
        return None


def send_due_task() -> None:
    """Beat's scheduler sends a due entry: what beat does at every tick."""
    celery: Celery[Any] = Celery("beat-test", set_as_current=False)
    entry = ScheduleEntry(name="sweep-inbox", task=EVENTS_SWEEP, schedule=schedule(15.0),
                          app=celery)  # fmt: skip
    SendsNowhere(celery, lazy=True).apply_entry(entry)


def test_beats_ticks_are_debug_lines(settings: Settings, worker_logs: WorkerLogs) -> None:
    send_due_task()
    assert at_info(worker_logs.lines()) == []
    # Seen where DEBUG is logged: LOG_LEVEL=DEBUG, or `loke-sync beat --loglevel DEBUG` (the
    # fault suite watches beat's ticks that way).
    for debug in (settings.model_copy(update={"log_level": "DEBUG"}), settings):
        worker_logs.configure(debug, celery_level=logging.DEBUG if debug is settings else None)
        send_due_task()
        ticks = [line for line in worker_logs.lines() if "Sending due task" in line["message"]]
        assert [(t["level"], t["logger"]) for t in ticks] == [("DEBUG", "celery.beat")]
    # Celery's default --loglevel (WARNING) does not hide LOG_LEVEL's INFO lines.
    worker_logs.configure(settings, celery_level=logging.WARNING)
    logging.getLogger("tasks.events").info("still said")
    assert at_info(worker_logs.lines()) == ["tasks.events: still said"]
