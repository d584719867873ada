"""Log lines from web, worker and beat, with the context that ties them: the organization, the
event type, the Celery task and the request id of the webhook.

One JSON object per line, unless a person is watching: on a terminal (or with LOG_FORMAT=text)
a short, coloured text line instead (`app.core.log_lines`). `loke-sync run` decides once, from
its own terminal, and hands the decision to web, worker and beat in their environment, whose
output may not be a terminal of their own.

Context is kept in contextvars, set where the work starts (a webhook, a task) and added to
every record by a filter, so no call site has to pass it along. Values that are secrets never
reach a log call; as a second line of defence, anything that looks like a bearer token or a
signature is masked on the way out.

Celery logs two INFO lines for every task it runs and beat one for every task it sends: for the
periodic sweeps, every few seconds whether they found work or not. Those lines are DEBUG here
(`QuietTicks`); the periodic tasks log their own INFO line when they did something.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal, Protocol

from app.core.log_lines import SafeJsonFormatter, TextFormatter

CONTEXT_FIELDS = ("org_id", "event_type", "task_id", "request_id")
_context: dict[str, ContextVar[str | None]] = {
    name: ContextVar(name, default=None) for name in CONTEXT_FIELDS
}


@contextmanager
def context(**values: str | None) -> Iterator[None]:
    """Everything logged inside carries these fields (org_id, event_type, task_id, request_id)."""
    tokens = [(_context[k], _context[k].set(v)) for k, v in values.items() if k in _context]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def set_context(**values: str | None) -> None:
    """Like `context`, for code that has no block to wrap (a Celery task's prerun signal)."""
    for key, value in values.items():
        if key in _context:
            _context[key].set(value)


class ContextFilter(logging.Filter):
    """Adds the context fields (organization, event, task, request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Fill the record's context fields the call site did not give."""
        for name, var in _context.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


LogFormat = Literal["json", "text"]


class Stream(Protocol):
    """Where lines go: all that matters here is whether it is a terminal."""

    def isatty(self) -> bool:
        """True for a terminal."""
        ...


FORMAT_ENV = "LOG_FORMAT"  # json, text, or auto (the default): text on a terminal
# Set by `loke-sync run` for each of its children (web, worker, beat): named on text lines.
PROCESS_ENV = "LOKE_SYNC_PROCESS"
# Loggers whose own lines are noise at INFO (every query, every HTTP connection).
_QUIET_LIBRARIES = ("sqlalchemy", "urllib3")
# Where Celery logs "Task ... received", "... succeeded" and beat's "Sending due task".
CELERY_TICK_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "celery.beat")
_BEAT_TICK = "Scheduler: Sending due task"


def chosen_format(requested: str | None, stream: Stream) -> LogFormat:
    """LOG_FORMAT's `json` or `text` as asked; otherwise (`auto`, unset, or a value the settings
    will refuse) text when `stream` is a terminal, JSON when it is a file or a pipe."""
    asked = (requested or "auto").strip().lower()
    if asked == "json":
        return "json"
    return "text" if asked == "text" or _is_terminal(stream) else "json"


def wants_colour(stream: Stream, environ: Mapping[str, str]) -> bool:
    """Colour on a terminal; never with NO_COLOR (no-color.org), always with FORCE_COLOR."""
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR", "0") not in ("", "0"):
        return True
    return _is_terminal(stream)


def child_environment(
    requested: str | None, stream: Stream, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The variables that make a child process log as this one would on `stream`: the format
    decided here, and colour on or off, whatever the child's own output turns out to be."""
    log_format = chosen_format(requested, stream)
    colour = log_format == "text" and wants_colour(stream, environ)
    return {FORMAT_ENV: log_format, **({"FORCE_COLOR": "1"} if colour else {"NO_COLOR": "1"})}


def _is_terminal(stream: Stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def logging_config(
    level: str = "INFO", environ: Mapping[str, str] | None = None, stream: Stream | None = None
) -> dict[str, Any]:
    """The `logging.config.dictConfig` of a process writing to stdout (`stream`: what stdout
    is, to decide text or JSON), at `level`."""
    environ = os.environ if environ is None else environ
    stream = sys.stdout if stream is None else stream
    formatter: dict[str, Any]
    if chosen_format(environ.get(FORMAT_ENV), stream) == "text":
        formatter = {"()": TextFormatter, "colour": wants_colour(stream, environ),
                     "process": environ.get(PROCESS_ENV) or None}  # fmt: skip
    else:
        formatter = {
            "()": SafeJsonFormatter,
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"line": formatter},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "line",
                "filters": ["context"],
            }
        },
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            **{name: {"level": "WARNING"} for name in _QUIET_LIBRARIES},
            "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }


# gunicorn's `logconfig_dict` (gunicorn.conf.py), read in its master as it starts.
LOGGING: dict[str, Any] = logging_config()


class QuietTicks(logging.Filter):
    """Makes DEBUG lines of Celery's INFO lines about the periodic tasks: "Task <name>[id]
    received" and "... succeeded" for the tasks in `task_names`, and beat's "Sending due task"
    (beat sends only periodic tasks). Every sweep runs every few seconds and mostly finds
    nothing; its own INFO line says when it did something. Lines about other tasks, retries and
    failures are left as they are."""

    def __init__(self, task_names: Collection[str]) -> None:
        # (Imported here: the CLI imports this module, and need not wait for Celery.)
        from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS

        super().__init__()
        self.task_names = frozenset(task_names)
        self.task_lines = (LOG_RECEIVED, LOG_SUCCESS)

    def filter(self, record: logging.LogRecord) -> bool:
        """Lower a periodic task's line to DEBUG; keep it only where DEBUG is logged."""
        if record.levelno != logging.INFO or not self._is_tick(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)

    def _is_tick(self, record: logging.LogRecord) -> bool:
        if record.name == "celery.beat":
            return str(record.msg).startswith(_BEAT_TICK)
        data = getattr(record, "data", None)  # Celery's context of the line: the task's name
        return (
            record.msg in self.task_lines
            and isinstance(data, dict)
            and data.get("name") in self.task_names
        )


def configure(level: str = "INFO", quiet_tasks: Collection[str] = ()) -> None:
    """Log lines on stdout for the whole process (idempotent); Celery's lines about the tasks
    in `quiet_tasks` (the periodic ones) and beat's ticks at DEBUG."""
    logging.config.dictConfig(logging_config(level))
    logging.captureWarnings(True)  # Python warnings become log lines too
    for name in CELERY_TICK_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, QuietTicks)]:
            logger.removeFilter(old)
        logger.addFilter(QuietTicks(quiet_tasks))
