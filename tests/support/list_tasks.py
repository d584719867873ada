"""The `lists` queue in fast tests: runs the reader and page tasks a RecordingDispatcher holds."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import func, inspect, select

from app.core.services import Services
from app.core.task_names import LISTS_READ, LISTS_STAGE
from app.lists import reader, stager, staging
from app.loke.client import current_loke_client
from tests.conftest import RecordingDispatcher, services_of

Task = tuple[str, tuple[Any, ...]]


class ListTasks:
    """The list tasks sent so far and not run yet by this object, in the order they were sent."""

    def __init__(self, app: Flask, dispatcher: RecordingDispatcher, since: int = 0) -> None:
        self.app = app
        self.dispatcher = dispatcher
        self.taken = since  # how much of dispatcher.sent has been looked at
        self.waiting: list[Task] = []

    @classmethod
    def from_now(cls, app: Flask) -> ListTasks:
        """Only tasks sent from now on (those sent before are as good as lost)."""
        dispatcher = services_of(app).dispatcher
        assert isinstance(dispatcher, RecordingDispatcher)
        return cls(app, dispatcher, len(dispatcher.sent))

    def pending(self) -> list[Task]:
        fresh = self.dispatcher.sent[self.taken :]
        self.taken = len(self.dispatcher.sent)
        self.waiting += [(n, a) for n, a, _, _ in fresh if n in (LISTS_READ, LISTS_STAGE)]
        return list(self.waiting)

    def take(self, name: str, *args: Any) -> Task:
        """The first waiting task of that name (whose arguments start with `args`)."""
        for task in self.pending():
            if task[0] == name and task[1][: len(args)] == args:
                self.waiting.remove(task)
                return task
        raise AssertionError(f"no {name}{args} waiting in {self.waiting}")

    def run(self, name: str, *args: Any) -> None:
        """Run the first waiting task of that name (whose arguments start with `args`)."""
        run_task(self.app, self.take(name, *args))

    def run_all(self, limit: int = 1000) -> int:
        """Run waiting tasks, and those they send, in order until none is left; how many ran."""
        for ran in range(limit):
            if not self.pending():
                return ran
            run_task(self.app, self.waiting.pop(0))
        raise AssertionError(f"list tasks still waiting after {limit}")


def run_task(app: Flask, task: Task) -> None:
    """What the worker does with one list task."""
    name, args = task
    services = services_of(app)
    with app.app_context():
        if name == LISTS_READ:
            reader.read_pages(services, current_loke_client(), *args)
        else:
            stager.stage_page(services, current_loke_client(), *args)


def staging_tables(services: Services) -> list[str]:
    """The staging tables that exist (one per run not cleared yet)."""
    with services.db.transaction() as session:
        names = inspect(session.connection()).get_table_names()
    return sorted(name for name in names if staging.is_staging_table(name))


def staged_count(services: Services, run_id: int) -> int:
    """Members staged by the run so far."""
    table = staging.staging_table(run_id)
    with services.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)
