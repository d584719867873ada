"""What a process's log lines look like: short text on a terminal (coloured unless NO_COLOR),
JSON lines into a file or a pipe, LOG_FORMAT to choose; and `loke-sync run` deciding once for
web, worker and beat, whose own output may be a pipe while the person watches a terminal.

Each case is a real Python process whose stdout is a real terminal (a pseudo-terminal) or a
pipe: `isatty` is asked of the stream itself, as in production."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from app.core import logs

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 60.0  # a bound for a hung child, not an expectation of speed
ANSI = "\x1b["
SCRIPT = """
import logging
from app.core import logs

logs.configure()
with logs.context(org_id="org-1", task_id="0123456789abcdef"):
    logging.getLogger("app.demo").warning(
        "delivered %s", "batch b-1", extra={"request_id": "req-9"}
    )
logging.getLogger("app.demo").info("sent Authorization: Bearer sekrit-token-value")
"""
# What the person's shell may carry: each case sets what it means to test.
CHOSEN_BY_CASE = ("LOG_FORMAT", "NO_COLOR", "FORCE_COLOR", "LOKE_SYNC_PROCESS")


def environment(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CHOSEN_BY_CASE}
    return env | values


def on_a_terminal(env: Mapping[str, str]) -> str:
    """SCRIPT's stdout, written to a pseudo-terminal."""
    master, slave = pty.openpty()
    try:
        child = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, env=dict(env),
                                 stdout=slave, stderr=subprocess.PIPE)  # fmt: skip
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the child wrote nothing and did not exit"
            readable, _, _ = select.select([master], [], [], remaining)
            if not readable:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal's other end (it exited)
                break
            if not data:
                break
            chunks.append(data)
        _, errors = child.communicate(timeout=DEADLINE_SECONDS)
    finally:
        os.close(master)
    assert child.returncode == 0, errors.decode()
    return b"".join(chunks).decode().replace("\r\n", "\n")  # (a terminal's newlines)


def into_a_pipe(env: Mapping[str, str]) -> str:
    """SCRIPT's stdout, read from a pipe."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def assert_json_lines(output: str) -> None:
    warning, info = [json.loads(line) for line in output.splitlines()]
    assert warning["level"] == "WARNING"
    assert warning["logger"] == "app.demo"
    assert warning["message"] == "delivered batch b-1"
    assert (warning["org_id"], warning["request_id"]) == ("org-1", "req-9")
    assert warning["task_id"] == "0123456789abcdef"
    assert info["message"] == "sent Authorization: Bearer [redacted]"


def assert_text_lines(output: str, colour: bool) -> None:
    plain = output
    for code in ("\x1b[0m", "\x1b[2m", "\x1b[32m", "\x1b[33m", "\x1b[36m", "\x1b[1;31m"):
        plain = plain.replace(code, "")
    assert (ANSI in output) is colour, output
    warning, info = plain.splitlines()
    assert not warning.startswith("{"), warning
    clock, level, logger, *message = warning.split()
    assert time.strptime(clock, "%H:%M:%S")
    assert (level, logger) == ("WARNING", "app.demo")
    # The context that matters, short: a task id cut to what tells tasks apart on one screen.
    assert message == ["delivered", "batch", "b-1", "org=org-1", "request=req-9", "task=01234567"]
    assert info.endswith(" INFO    app.demo sent Authorization: Bearer [redacted]")
    assert "sekrit" not in output


def test_a_terminal_gets_short_coloured_text_lines() -> None:
    assert_text_lines(on_a_terminal(environment()), colour=True)


def test_a_pipe_or_a_file_gets_json_lines() -> None:
    assert_json_lines(into_a_pipe(environment()))


def test_log_format_json_keeps_json_on_a_terminal() -> None:
    assert_json_lines(on_a_terminal(environment(LOG_FORMAT="json")))


def test_log_format_text_forces_text_into_a_pipe_without_colour() -> None:
    assert_text_lines(into_a_pipe(environment(LOG_FORMAT="text")), colour=False)


def test_no_color_keeps_a_terminals_text_plain() -> None:
    assert_text_lines(on_a_terminal(environment(NO_COLOR="1")), colour=False)


class Terminal:
    """A stream that is a terminal, as `run`'s own stdout is when a person runs it."""

    def isatty(self) -> bool:
        return True


class Pipe:
    def isatty(self) -> bool:
        return False


def test_run_decides_for_its_children_from_its_own_terminal() -> None:
    # `run` on a terminal: its children write into whatever they were given (a pipe here),
    # and still print what the person's terminal should show.
    decided = logs.child_environment(None, Terminal(), environ={})
    assert decided == {"LOG_FORMAT": "text", "FORCE_COLOR": "1"}
    assert_text_lines(into_a_pipe(environment(**decided)), colour=True)
    # `run` piped into a file or a log collector: JSON, whatever the children's output is.
    piped = logs.child_environment(None, Pipe(), environ={})
    assert piped == {"LOG_FORMAT": "json", "NO_COLOR": "1"}
    assert_json_lines(on_a_terminal(environment(**piped)))
    # A person's choices win: LOG_FORMAT, and NO_COLOR on a terminal.
    assert logs.child_environment("json", Terminal(), environ={})["LOG_FORMAT"] == "json"
    plain = logs.child_environment("auto", Terminal(), environ={"NO_COLOR": "1"})
    assert plain == {"LOG_FORMAT": "text", "NO_COLOR": "1"}


def test_a_process_named_by_run_says_which_it_is_on_text_lines() -> None:
    output = into_a_pipe(environment(LOG_FORMAT="text", LOKE_SYNC_PROCESS="worker"))
    assert " WARNING worker app.demo delivered batch b-1 " in output
