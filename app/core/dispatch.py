"""How plain code asks for background work without knowing Celery: a task sent by its name."""

from __future__ import annotations

from typing import Any, Protocol


class BrokerUnavailable(ConnectionError):
    """The broker could not take a task: it is down or out of reach (not the task's fault)."""


class Dispatcher(Protocol):
    """Sends tasks by their stable names (`app.core.task_names`); Celery's in every process,
    a recording stand-in in fast tests."""

    def send(
        self,
        task_name: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        countdown: float = 0,
    ) -> None:
        """Enqueue a task by its stable name; raises BrokerUnavailable when the broker cannot
        take it."""

    def ping(self) -> None:
        """Raise if the broker cannot be reached."""
