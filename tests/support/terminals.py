"""Commands a person would leave running in terminals of their own (the sandbox, a CRM,
`loke-sync run`), for tests that follow the README: each in its own session, its output in a
log file, stopped as a person stops it (Ctrl-C: SIGINT), and checked to leave nothing behind."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support.process_groups import assert_group_gone

STOP_SECONDS = 30.0  # a bound for a hung process, not an expectation of speed


@dataclass
class Terminal:
    """One long-running command and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        """What it printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 60) -> str:
        """Its last lines, named, for a failure's message."""
        last = "\n".join(self.output().splitlines()[-lines:])
        return f"\n--- {self.name} ---\n{last}\n"

    def wait_until(self, ready: Callable[[], bool], timeout: float = 60.0) -> None:
        """Wait, bounded, until `ready()`; fail at once, with its output, if it exits first."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.process.returncode})"
                                     + self.tail())  # fmt: skip
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.name} not ready after {timeout:g} s" + self.tail())
            time.sleep(0.2)

    def stop(self) -> None:
        """Ctrl-C, then wait until every process it started is gone."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise AssertionError(f"{self.name} ignored Ctrl-C" + self.tail()) from None
        assert_group_gone(self.process.pid)


def open_terminal(
    name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_dir: Path
) -> Terminal:
    """Start `argv` in a session of its own (so that stopping it can be checked to have
    reached its children), its output to `log_dir/<name>.log`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    return Terminal(name, process, log_path)


def answers(url: str) -> Callable[[], bool]:
    """Whether `url` answers 200 now."""

    def check() -> bool:
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    return check
