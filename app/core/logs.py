"""One JSON object per log line, from web, worker and beat, with the context that ties them:
the organization, the event type, the Celery task and the request id of the webhook.

Context is kept in contextvars, set where the work starts (a webhook, a task) and added to
every record by a filter, so no call site has to pass it along. Values that are secrets never
reach a log call; as a second line of defence, anything that looks like a bearer token or a
signature is masked on the way out.
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

CONTEXT_FIELDS = ("org_id", "event_type", "task_id", "request_id")
_context: dict[str, ContextVar[str | None]] = {
    name: ContextVar(name, default=None) for name in CONTEXT_FIELDS
}

# Bearer tokens, sha256= signatures, and Fernet tokens (our encrypted secrets) never print.
_SECRET_LOOKING = re.compile(r"(Bearer\s+)\S+|(sha256=)[0-9a-fA-F]{16,}|gAAAAA[\w-]{20,}={0,2}")


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


class SafeJsonFormatter(JsonFormatter):
    """JSON lines, with anything that looks like a secret masked."""

    def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
        """Mask secret-looking text in every field of the record."""
        for key, value in log_record.items():
            if isinstance(value, str):
                log_record[key] = _SECRET_LOOKING.sub(_mask, value)
        return log_record


def _mask(match: re.Match[str]) -> str:
    prefix = match.group(1) or match.group(2) or ""
    return f"{prefix}[redacted]"


LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": ContextFilter}},
    "formatters": {
        "json": {
            "()": SafeJsonFormatter,
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": sys.stdout,
            "formatter": "json",
            "filters": ["context"],
        }
    },
    "root": {"level": "INFO", "handlers": ["stdout"]},
    "loggers": {
        # Their own lines are noise at INFO (every query, every HTTP connection).
        "sqlalchemy": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
    },
}


def configure(level: str = "INFO") -> None:
    """JSON lines on stdout for the whole process (idempotent)."""
    config = {**LOGGING, "root": {**LOGGING["root"], "level": level}}
    logging.config.dictConfig(config)
    logging.captureWarnings(True)  # Python warnings become JSON lines too
