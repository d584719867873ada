"""`loke-sync web|worker|beat` become the service's processes with the one command line each
(`app.core.processes`); the Procfile's processes themselves start in
`tests/integration/test_deployment.py`. Here the process is not replaced: `os.execv`, the
operating system's door, records what it was asked to run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli.main import main

Exec = list[tuple[str, list[str]]]


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> Exec:
    calls: Exec = []
    monkeypatch.setattr(os, "execv", lambda path, argv: calls.append((path, list(argv))))
    for name in ("PORT", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_a_worker_consumes_every_queue_unless_told_which(execs: Exec) -> None:
    result = CliRunner().invoke(main, ["worker"])
    assert result.exit_code == 0, result.output
    [(path, argv)] = execs
    assert path == sys.executable
    assert argv[1:] == ["-m", "celery", "--quiet", "-A", "workers.worker", "worker",
                        "-Q", "events,delivery,backfill,lists"]  # fmt: skip


def test_a_worker_on_some_queues_hands_celery_the_options_it_does_not_know(execs: Exec) -> None:
    result = CliRunner().invoke(main, ["worker", "-Q", "backfill,lists", "-c", "2", "-n", "b@%h"])
    assert result.exit_code == 0, result.output
    [(_, argv)] = execs
    assert argv[argv.index("-Q") + 1] == "backfill,lists"
    assert argv[-4:] == ["-c", "2", "-n", "b@%h"]


def test_a_worker_on_a_queue_the_service_does_not_have_is_refused(execs: Exec) -> None:
    result = CliRunner().invoke(main, ["worker", "-Q", "events,evnts"])
    assert result.exit_code == 2
    assert "unknown queue 'evnts'" in result.output
    assert "events,delivery,backfill,lists" in result.output
    assert execs == []


def test_web_takes_its_port_and_workers_from_the_environment(
    execs: Exec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    result = CliRunner().invoke(main, ["web"])
    assert result.exit_code == 0, result.output
    [(_, argv)] = execs
    assert argv[1:] == ["-m", "gunicorn", "app.wsgi:app", "--bind", "0.0.0.0:9123", "--workers",
                        "3", "--no-control-socket", "--access-logfile", "-"]  # fmt: skip


def test_beat_runs_celery_beat_with_the_options_given(execs: Exec) -> None:
    result = CliRunner().invoke(main, ["beat", "--loglevel", "INFO"])
    assert result.exit_code == 0, result.output
    [(_, argv)] = execs
    assert argv[1:] == ["-m", "celery", "--quiet", "-A", "workers.worker", "beat",
                        "--loglevel", "INFO"]  # fmt: skip


def test_web_serves_every_interface_as_the_procfile_and_compose_run_it(execs: Exec) -> None:
    """`run` and `demo` listen on 127.0.0.1 (tests/unit/test_run_banner.py); the deployed web
    process, behind its platform's router or compose's published port, keeps serving all."""
    procfile = (Path(__file__).resolve().parents[2] / "Procfile").read_text().splitlines()
    assert "web: loke-sync web" in procfile
    result = CliRunner().invoke(main, ["web"])
    assert result.exit_code == 0, result.output
    [(_, argv)] = execs
    assert argv[argv.index("--bind") + 1] == "0.0.0.0:8000"
