"""The image and compose, read as Docker would read them (no Docker engine runs here): the image
holds every file the web command reads, gunicorn gets a metrics directory that exists and starts
empty, a stop waits long enough for the work in flight, and Flower is neither open nor public."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from app.core.config import Settings
from app.delivery import claims, sender, transmit
from app.ingest import background_kicks

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"

# Run from the working directory as the image runs it: gunicorn's configuration, then the app it
# serves; prints every project file that was read (modules, templates, static files).
WEB_FILES_SCRIPT = """
import json, os, runpy, sys
runpy.run_path("gunicorn.conf.py")
from app.wsgi import app
root = os.getcwd()
read = {"gunicorn.conf.py"}
for module in list(sys.modules.values()):
    path = os.path.abspath(getattr(module, "__file__", None) or "/")
    if path.startswith(root + os.sep) and "site-packages" not in path:
        read.add(os.path.relpath(path, root))
for folder in (app.template_folder, app.static_folder):
    folder = os.path.join(app.root_path, folder)
    for top, _, names in os.walk(folder):
        read.update(os.path.relpath(os.path.join(top, name), root) for name in names)
print(json.dumps(sorted(read)))
"""


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            found.append((keyword.upper(), arguments.strip()))
    return found


def copied() -> dict[PurePosixPath, PurePosixPath]:
    """Each path of the build context the image copies, with where it lands in the image."""
    destinations: dict[PurePosixPath, PurePosixPath] = {}
    workdir = PurePosixPath("/")
    for keyword, arguments in instructions():
        if keyword == "WORKDIR":
            workdir = workdir / arguments
        elif keyword == "COPY":
            *sources, target = shlex.split(arguments)
            assert not any(s.startswith("--") for s in sources), "COPY flags are not read here"
            into = workdir / target
            for source in sources:
                lands = into / PurePosixPath(source).name if target.endswith("/") else into
                destinations[PurePosixPath(source)] = lands
    return destinations


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in instructions():
        if keyword == "ENV":
            for part in shlex.split(arguments):
                name, _, value = part.partition("=")
                env[name] = value
    return env


def docker_ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (the last match decides;
    a pattern that matches a folder matches all it holds)."""
    ignored = False
    for pattern in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        variants = {pattern, pattern.replace("**/", "")}
        if any(fnmatch.fnmatchcase(p, v) for p in prefixes for v in variants):
            ignored = not keep
    return ignored


def in_image(path: str) -> PurePosixPath | None:
    """Where a file of the build context lands in the image, or None if it is left out."""
    if docker_ignored(path):
        return None
    for source, lands in copied().items():
        relative = PurePosixPath(path)
        if relative == source:
            return lands
        if source in relative.parents:
            return lands / relative.relative_to(source)
    return None


def workdir() -> PurePosixPath:
    found = PurePosixPath("/")
    for keyword, arguments in instructions():
        if keyword == "WORKDIR":
            found = found / arguments
    return found


def compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def seconds(duration: str) -> float:
    """A compose duration ("45s", "1m30s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(float(n) * units[u] for n, u in parts)


def test_the_image_holds_every_file_the_web_command_reads(tmp_path: Path) -> None:
    env = {**os.environ, "VAR_DIR": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "ADMIN_TOKEN", "SECRET_KEY"):
        env.pop(name, None)  # the embedded mode: no server needed to build the app
    read = subprocess.run(
        [sys.executable, "-c", WEB_FILES_SCRIPT],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    files = json.loads(read.splitlines()[-1])
    assert "app/wsgi.py" in files  # the script saw the app,
    assert "app/templates/base.html" in files  # and its templates

    missing = [path for path in files if in_image(path) is None]
    assert missing == [], "read by the web command but not in the image"
    # gunicorn reads ./gunicorn.conf.py: the image's command starts in the folder that holds it.
    assert in_image("gunicorn.conf.py") == workdir() / "gunicorn.conf.py"
    assert instructions()[-1] == ("CMD", '["loke-sync", "web"]')
    assert "working_dir" not in compose()["web"]


def test_gunicorn_in_the_image_and_compose_gets_a_metrics_directory_that_starts_empty() -> None:
    directory = image_env().get("PROMETHEUS_MULTIPROC_DIR", "")
    assert directory.startswith("/"), "the image sets PROMETHEUS_MULTIPROC_DIR"
    runs = " ".join(arguments for keyword, arguments in instructions() if keyword == "RUN")
    assert re.search(r"mkdir -p [^&]*\$PROMETHEUS_MULTIPROC_DIR", runs), "the image creates it"
    assert re.search(r"chown [^&]*\$PROMETHEUS_MULTIPROC_DIR", runs), "the user can write it"
    for name in ("web", "worker", "beat"):
        # A tmpfs is empty at every start of the container (a restart keeps the container's
        # files, and the new processes would reuse the old ones' pids, and their counters).
        assert directory in compose()[name].get("tmpfs", []), name
        assert "PROMETHEUS_MULTIPROC_DIR" not in compose()[name].get("environment", {}), name


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_gunicorn_starts_on_a_metrics_directory_without_the_files_of_dead_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone, alive = dead_pid(), os.getpid()
    stale = [tmp_path / f"counter_{gone}.db", tmp_path / f"histogram_{gone}.db"]
    live = [tmp_path / f"counter_{alive}.db", tmp_path / f"gauge_livesum_{alive}.db"]
    other = tmp_path / "notes.txt"
    for path in [*stale, *live, other]:
        path.write_bytes(b"x")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    runpy.run_path(str(ROOT / "gunicorn.conf.py"))

    assert [path.exists() for path in stale] == [False, False]
    # Another process of this machine (a Celery worker) may be writing its own: kept.
    assert [path.exists() for path in live] == [True, True]
    assert other.exists()


def longest_flush_seconds() -> float:
    """How long one delivery flush can run: it claims batches for up to its time budget; its
    last batch waits for its slot (at most RESERVE_AHEAD), is on the wire up to the delivery
    timeout, then settles (with SETTLE_ATTEMPTS tries and their pauses, plus their queries)."""
    settle_pauses = sum(0.2 * 2.0**attempt for attempt in range(transmit.SETTLE_ATTEMPTS - 1))
    settle = settle_pauses + transmit.SETTLE_ATTEMPTS * 0.5
    default_timeout = float(Settings.model_fields["delivery_timeout_seconds"].default)
    return sender.TIME_BUDGET + claims.RESERVE_AHEAD.total_seconds() + default_timeout + settle


def test_stopping_a_worker_waits_for_a_delivery_flush_in_flight() -> None:
    grace = seconds(compose()["worker"].get("stop_grace_period", "10s"))  # Docker's default
    # Killed mid-flush, its batch goes out again only once its lease ran out.
    assert grace > longest_flush_seconds() + 5  # and Celery's own exit after it


def test_stopping_the_web_lets_requests_and_pending_kicks_finish() -> None:
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    graceful = config.get("graceful_timeout")
    assert isinstance(graceful, int | float), "gunicorn.conf.py sets graceful_timeout"
    fields = Settings.model_fields
    longest_call = max(
        fields["loke_timeout_seconds"].default, fields["delivery_timeout_seconds"].default
    )
    # A request waiting on one call to LOKE (or a CRM, checking a token) ends, then the
    # worker's kicks are flushed (app/ingest/background_kicks.py).
    assert graceful > longest_call + background_kicks.FLUSH_AT_EXIT_SECONDS
    grace = seconds(compose()["web"].get("stop_grace_period", "10s"))
    assert grace > graceful + background_kicks.FLUSH_AT_EXIT_SECONDS


def test_flower_asks_for_a_password_and_listens_on_this_machine_only() -> None:
    flower = compose()["flower"]
    assert flower["profiles"] == ["monitoring"]  # not started by a plain `docker compose up`
    for mapping in flower.get("ports", []):
        assert str(mapping).startswith("127.0.0.1:"), mapping
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "${FLOWER_BASIC_AUTH:-}"

    shell, flag, script = flower["command"]
    assert (shell, flag) == ("sh", "-c")
    script = script.replace("$$", "$")  # compose's escape for a literal $
    assert script.endswith("exec celery -A workers.worker flower --port=5555")
    bare = {"PATH": "/nonexistent"}  # so that getting past the check ends at a missing celery
    refused = subprocess.run(["/bin/sh", "-c", script], env={**bare, "FLOWER_BASIC_AUTH": ""},
                             capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    assert refused.returncode != 0
    assert "FLOWER_BASIC_AUTH" in refused.stderr
    allowed = subprocess.run(["/bin/sh", "-c", script], env={**bare, "FLOWER_BASIC_AUTH": "a:b"},
                             capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    assert allowed.returncode == 127, allowed.stderr  # it went on to start celery
