"""A WSGI app for tests/unit/test_web_shutdown.py: every request wants a kick, as the webhook
receiver does, and the kick takes a while to reach a broker that writes down what it got."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from app.core.kicks import Kicks
from app.ingest.background_kicks import BackgroundKicks

SEND_SECONDS = 1.0  # longer than gunicorn takes to stop a worker once asked


class SlowRecordingBroker:
    """Takes a task after SEND_SECONDS, appending it to the file KICKS_RECORD names."""

    def send(
        self,
        task_name: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        countdown: float = 0,
    ) -> None:
        time.sleep(SEND_SECONDS)
        with open(os.environ["KICKS_RECORD"], "a") as record:
            record.write(" ".join((task_name, *args)) + "\n")

    def ping(self) -> None:
        """Always reachable."""


kicks = BackgroundKicks(Kicks(SlowRecordingBroker(), None))


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Want a kick (named by the query string), answer at once: it is sent after the answer."""
    kicks.kick("events.drain", environ.get("QUERY_STRING") or "probe")
    start_response("202 Accepted", [("Content-Type", "text/plain")])
    return [b"kick wanted\n"]
