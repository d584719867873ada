"""How one log record becomes one line: a JSON object for machines, or a short text line for
a person at a terminal (`loke-sync run`); in both, anything that looks like a secret is masked.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# Bearer tokens, sha256= signatures, and Fernet tokens (our encrypted secrets) never print.
_SECRET_LOOKING = re.compile(r"(Bearer\s+)\S+|(sha256=)[0-9a-fA-F]{16,}|gAAAAA[\w-]{20,}={0,2}")

# The context fields a person reads, with the short names a text line gives them. A task id is
# cut to its first characters: enough to tell concurrent tasks apart on one screen.
TEXT_FIELDS = (("org_id", "org"), ("event_type", "event"), ("request_id", "request"),
               ("task_id", "task"))  # fmt: skip
TASK_ID_CHARS = 8

# ANSI SGR codes: dim for what frames the message, a colour per level for what to look at.
_RESET = "\033[0m"
_DIM = "2"
_PROCESS = "36"  # cyan
_LEVEL_COLOURS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "1;31", "CRITICAL": "1;31"}


def mask_secrets(text: str) -> str:
    """`text` with bearer tokens, signatures and encrypted secrets replaced by `[redacted]`."""
    return _SECRET_LOOKING.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    prefix = match.group(1) or match.group(2) or ""
    return f"{prefix}[redacted]"


class SafeJsonFormatter(JsonFormatter):
    """JSON lines, with anything that looks like a secret masked."""

    def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
        """Mask secret-looking text in every field of the record."""
        for key, value in log_record.items():
            if isinstance(value, str):
                log_record[key] = mask_secrets(value)
        return log_record


class TextFormatter(logging.Formatter):
    """`14:02:11 INFO    worker app.delivery.transmit delivered batch … org=org-1 task=3f2a1b0c`:
    time, level, process (web, worker or beat, when `loke-sync run` named it), logger, message,
    then the context fields that are set. Coloured only when `colour` (a terminal that wants it).
    """

    def __init__(self, colour: bool = False, process: str | None = None) -> None:
        super().__init__()
        self.colour = colour
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        """One line (plus the traceback, if any), secrets masked."""
        level = record.levelname
        parts = [
            self._paint(dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S"), _DIM),
            self._paint(f"{level:<7}", _LEVEL_COLOURS.get(level, "")),
            self._paint(self.process, _PROCESS) if self.process else "",
            self._paint(record.name, _DIM),
            # Celery's own messages end with a newline; a line is one line.
            record.getMessage().strip(),
            self._paint(" ".join(_fields(record)), _DIM),
        ]
        line = " ".join(part for part in parts if part)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return mask_secrets(line)

    def _paint(self, text: str, code: str) -> str:
        if not self.colour or not code or not text:
            return text
        return f"\033[{code}m{text}{_RESET}"


def _fields(record: logging.LogRecord) -> list[str]:
    shown = []
    for name, label in TEXT_FIELDS:
        value = getattr(record, name, None)
        if value:
            text = str(value)
            shown.append(f"{label}={text[:TASK_ID_CHARS] if name == 'task_id' else text}")
    return shown
