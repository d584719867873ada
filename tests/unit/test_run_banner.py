"""What `loke-sync run` says when it starts (the dashboard, where the admin token is, how to
stop) and where `run` and `demo` listen: this machine only, unless told otherwise. (`loke-sync
web`, the Procfile's, serves every interface: tests/unit/test_process_commands.py.)

The processes themselves are not started here: `subprocess.Popen` records what it was asked."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from app.cli.banner import run_banner
from app.cli.main import main
from app.core import processes
from app.core.config import Settings, load_settings
from tests.support.credentials import ADMIN_TOKEN, SECRET_KEY

SERVERS = ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "ADMIN_TOKEN", "SECRET_KEY")
CHOSEN_BY_CASE = ("PORT", "LOG_FORMAT", "NO_COLOR", "FORCE_COLOR")
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 - an address these tests pass along, never bind


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh embedded mode under tmp_path: its admin token generated into var/admin-token."""
    for name in (*SERVERS, *CHOSEN_BY_CASE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    # start_service keeps the one it is given: the test process's stays as it was.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    return tmp_path / "var"


def test_the_banner_names_the_dashboard_the_token_file_and_ctrl_c(embedded: Path) -> None:
    settings = load_settings()
    banner = run_banner(settings, "127.0.0.1", 8123)
    assert "  dashboard     http://127.0.0.1:8123/\n" in banner
    assert f"  admin token   in {embedded / 'admin-token'}\n" in banner
    assert settings.required_admin_token not in banner  # where it is, not what it is
    assert "  webhooks      http://127.0.0.1:8123/webhooks/loke/<orgId>\n" in banner
    assert "Ctrl-C stops all three." in banner
    assert "every interface" not in banner


def test_a_token_from_the_environment_is_named_so(embedded: Path) -> None:
    load_settings()  # an earlier run's generated token is left in var/
    settings = load_settings(admin_token=ADMIN_TOKEN, secret_key=SECRET_KEY)
    banner = run_banner(settings, EVERY_INTERFACE, 8000)
    assert "  admin token   ADMIN_TOKEN from the environment\n" in banner
    # Listening everywhere, the browser on this machine still opens the loopback address.
    assert "  dashboard     http://127.0.0.1:8000/\n" in banner
    assert "  listening on  every interface (0.0.0.0), not only this machine\n" in banner


@dataclass
class Started:
    """What `subprocess.Popen` was asked to start, by process name."""

    argv: dict[str, list[str]] = field(default_factory=dict)
    env: dict[str, dict[str, str]] = field(default_factory=dict)

    def bind(self) -> str:
        web = self.argv["web"]
        return web[web.index("--bind") + 1]


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Started:
    seen = Started()

    class RecordingPopen:
        def __init__(self, argv: list[str], env: dict[str, str] | None = None, **_: Any) -> None:
            name = "web" if "gunicorn" in argv else argv[argv.index("workers.worker") + 1]
            seen.argv[name], seen.env[name] = argv, env or {}

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)  # as app.core.processes calls it
    return seen


def test_start_service_serves_this_machine_unless_given_a_host(
    embedded: Path, started: Started
) -> None:
    settings = load_settings()
    processes.start_service(settings, 8123, 1, announce=lambda _: None)
    assert started.bind() == "127.0.0.1:8123"
    processes.start_service(settings, 8123, 1, announce=lambda _: None, host=EVERY_INTERFACE)
    assert started.bind() == "0.0.0.0:8123"
    processes.start_service(settings, 8123, 1, announce=lambda _: None, host="::")
    assert started.bind() == "[::]:8123"


def test_start_service_hands_its_log_format_and_their_names_to_its_children(
    embedded: Path, started: Started, tmp_path: Path
) -> None:
    settings = load_settings()
    with (tmp_path / "service.log").open("ab") as log:  # the demo's: a file, so JSON
        processes.start_service(settings, 8123, 1, output=log, announce=lambda _: None)
    assert set(started.env) == {"web", "worker", "beat"}
    for name, env in started.env.items():
        assert (env["LOG_FORMAT"], env["LOKE_SYNC_PROCESS"], env["NO_COLOR"]) == ("json", name, "1")
        assert env["VAR_DIR"] == str(embedded)  # the rest of the environment goes along


@dataclass
class RunCalls:
    hosts: list[str] = field(default_factory=list)


@pytest.fixture
def run_calls(monkeypatch: pytest.MonkeyPatch) -> RunCalls:
    """`run` without its processes: what it would start, then an immediate clean stop."""
    calls = RunCalls()

    def start_service(
        _settings: Settings, _port: int, _workers: int, **options: Any
    ) -> dict[str, Any]:
        calls.hosts.append(options["host"])
        return {}

    monkeypatch.setattr("app.cli.service.start_service", start_service)
    monkeypatch.setattr("app.cli.service.supervise", lambda *_, **__: 0)
    return calls


def test_run_listens_on_127_0_0_1_by_default_and_prints_its_banner(
    embedded: Path, run_calls: RunCalls
) -> None:
    result = CliRunner().invoke(main, ["run", "--port", "8124"])
    assert result.exit_code == 0, result.output
    assert run_calls.hosts == ["127.0.0.1"]
    assert "  dashboard     http://127.0.0.1:8124/\n" in result.output
    assert f"  admin token   in {embedded / 'admin-token'}\n" in result.output
    assert "Ctrl-C stops all three." in result.output


def test_run_listens_where_host_says(embedded: Path, run_calls: RunCalls) -> None:
    result = CliRunner().invoke(main, ["run", "--host", EVERY_INTERFACE])
    assert result.exit_code == 0, result.output
    assert run_calls.hosts == [EVERY_INTERFACE]
    assert "every interface (0.0.0.0)" in result.output


def test_demo_listens_on_127_0_0_1_unless_given_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from devtools.demo import runner

    hosts: list[str] = []
    monkeypatch.setattr(runner, "run_demo", lambda _a, ports, *_: hosts.append(ports.host))
    for argv in (["demo"], ["demo", "--host", EVERY_INTERFACE]):
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == 0, result.output
    assert hosts == ["127.0.0.1", EVERY_INTERFACE]
