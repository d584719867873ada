"""A web worker that stops sends the kicks its requests wanted first (within a bound): the
events they stored are applied now, not when the sweeper next looks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from app.core.kicks import Kicks
from app.ingest.background_kicks import BackgroundKicks
from tests.conftest import RecordingDispatcher
from tests.support.processes import ROOT, free_port


def wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


def test_a_kick_wanted_just_before_gunicorn_stops_is_sent(tmp_path: Path) -> None:
    record = tmp_path / "kicks.txt"
    port = free_port()
    env = {**os.environ, "KICKS_RECORD": str(record), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with (tmp_path / "gunicorn.log").open("wb") as log:
        # From the project's folder, so gunicorn reads gunicorn.conf.py as in production.
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "tests.support.kick_app:app",
             "--bind", f"127.0.0.1:{port}", "--workers", "1", "--no-control-socket"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        assert wait_for(lambda: answers(f"http://127.0.0.1:{port}/"), 30), "gunicorn started"
        assert requests.get(f"http://127.0.0.1:{port}/?last", timeout=5).status_code == 202
        gunicorn.send_signal(signal.SIGTERM)  # the kick is still on its way (SEND_SECONDS)
        assert gunicorn.wait(timeout=60) == 0
    finally:
        if gunicorn.poll() is None:
            gunicorn.kill()
            gunicorn.wait()
    sent = record.read_text().splitlines() if record.exists() else []
    assert "events.drain last" in sent, (tmp_path / "gunicorn.log").read_text()


def test_closing_gives_up_on_an_unreachable_queue_and_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = RecordingDispatcher()
    dispatcher.fail_with = ConnectionError("broker down")
    kicks = BackgroundKicks(Kicks(dispatcher, None))
    kicks.kick("events.drain")
    assert wait_for(lambda: not kicks.healthy, 10)

    assert kicks.close(timeout=0.2) is False  # not sent: the inbox sweeper will find it
    assert "not sent" in caplog.text
    thread = kicks._thread
    assert thread is not None
    thread.join(10)
    assert not thread.is_alive()
    dispatcher.fail_with = None
    assert dispatcher.sent == []  # nothing more was tried once closed
