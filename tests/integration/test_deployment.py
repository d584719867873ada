"""The Procfile's processes start and answer, exactly as written; compose runs the same ones."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from tests.support.processes import ROOT, Stack, free_port

PROCFILE = ROOT / "Procfile"
COMPOSE = ROOT / "docker-compose.yml"


def procfile() -> dict[str, str]:
    entries = {}
    for line in PROCFILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def test_compose_runs_the_procfile_commands_word_for_word() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, command in procfile().items():
        shell, flag, script = services[name]["command"]
        assert (shell, flag) == ("sh", "-c")
        assert script.removeprefix("exec ").replace("$$", "$") == command, name
    assert services["redis"]["command"][-2:] == ["--maxmemory-policy", "noeviction"]
    assert "--appendonly" in services["redis"]["command"]
    assert services["flower"]["profiles"] == ["monitoring"]


def run_procfile(stack: Stack, name: str) -> subprocess.Popen[bytes]:
    """The Procfile line, through a shell, with the virtualenv's commands on PATH."""
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = {**os.environ, **stack.env, "PATH": path}
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    with (stack.log_dir / f"procfile-{name}.log").open("ab") as log:
        return subprocess.Popen(
            ["sh", "-c", f"exec {procfile()[name]}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def test_each_procfile_process_starts_and_answers(stack: Stack) -> None:
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stack.env["PORT"] = str(port)
    stack.env["SWEEP_INTERVAL_SECONDS"] = "1"
    stack.env["LOG_LEVEL"] = "DEBUG"  # beat's "Sending due task" is a DEBUG line
    for _ in range(2):  # release runs on every deploy: the second run changes nothing
        release = run_procfile(stack, "release")
        assert release.wait(timeout=60) == 0

    started = {name: run_procfile(stack, name) for name in ("web", "worker", "beat")}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200

        env = {**os.environ, **stack.env}
        ping = ""
        for _ in range(20):
            ping = subprocess.run(
                [sys.executable, "-m", "celery", "-A", "workers.worker", "inspect", "ping",
                 "--timeout", "2"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
            ).stdout  # fmt: skip
            if "pong" in ping:
                break
            time.sleep(1)
        assert "pong" in ping

        beat_log = stack.log_dir / "procfile-beat.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "Sending due task" not in beat_log.read_text():
            time.sleep(0.5)
        assert "Sending due task" in beat_log.read_text()
        for name, process in started.items():
            assert process.poll() is None, f"{name} exited"
    finally:
        for process in started.values():
            process.terminate()
        for process in started.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
