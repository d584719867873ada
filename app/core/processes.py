"""The service's processes: the command line of each (web, worker, beat), and running them
together under one supervisor (`loke-sync run`, `loke-sync demo`).

The one place that knows how they are started: the Procfile, compose, the tests and the benches
all start them through `loke-sync web|worker|beat`, which runs the command lines built here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess  # nosec B404 - our own fixed command lines, nothing from outside
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from app.core.config import Settings
from app.core.queues import ALL_QUEUES, QueueName

CELERY_APP = "workers.worker"
WSGI_APP = "app.wsgi:app"
STOP_GRACE_SECONDS = 45  # what `run` waits for its processes to stop before killing them


def web_command(
    bind: str,
    workers: int,
    access_log: bool = True,
    extra: Sequence[str] = (),
    wsgi_app: str = WSGI_APP,
) -> list[str]:
    """gunicorn serving the Flask app (`extra`: more gunicorn options; `wsgi_app`: another app
    under the same flags, as a bench's baseline)."""
    argv = [sys.executable, "-m", "gunicorn", wsgi_app, "--bind", bind,
            "--workers", str(workers), "--no-control-socket"]  # fmt: skip
    if access_log:
        argv += ["--access-logfile", "-"]
    return [*argv, *extra]


def worker_command(
    queues: Sequence[QueueName] = ALL_QUEUES, extra: Sequence[str] = ()
) -> list[str]:
    """A Celery worker consuming `queues` (`extra`: more `celery worker` options)."""
    return [sys.executable, "-m", "celery", "--quiet", "-A", CELERY_APP, "worker",
            "-Q", ",".join(queues), *extra]  # fmt: skip


def beat_command(extra: Sequence[str] = ()) -> list[str]:
    """Celery beat (`extra`: more `celery beat` options)."""
    return [sys.executable, "-m", "celery", "--quiet", "-A", CELERY_APP, "beat", *extra]


def start_service(
    settings: Settings,
    port: int,
    web_workers: int,
    output: IO[bytes] | None = None,
    announce: Callable[[str], object] = print,
) -> dict[str, subprocess.Popen[bytes]]:
    """Migrate, then start web, worker and beat as children of this process (their output to
    `output`, else to this terminal), telling `announce` where to find them."""
    from app.store.migrate import upgrade  # (alembic is slow to import: only this command needs it)

    upgrade(settings.sqlalchemy_url)
    declare_embedded_queues(settings)
    # The embedded broker suits threads: every prefork child would poll SQLite on its own.
    pool = ["-P", "threads", "-c", "4"] if settings.embedded else []
    commands = {
        "web": web_command(f"0.0.0.0:{port}", web_workers, access_log=False),
        "worker": worker_command(extra=pool),
        "beat": beat_command(),
    }
    # web, worker and beat share one metrics directory, so /metrics shows all three.
    metrics = settings.var_dir / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics.resolve()))
    if settings.embedded:
        announce(f"embedded mode: data under {settings.var_dir.resolve()}/")
        announce(f"admin token: {settings.admin_token}")
    announce(f"webhooks: http://localhost:{port}/webhooks/loke/<orgId>")
    return {
        name: subprocess.Popen(argv, stdout=output, stderr=output)  # nosec B603
        for name, argv in commands.items()
    }


def supervise(
    processes: dict[str, subprocess.Popen[bytes]],
    give_up: Callable[[], bool] = lambda: False,
    announce: Callable[[str], object] = print,
) -> int:
    """Wait for SIGINT/SIGTERM, a child exiting or `give_up()`; then stop every child.
    Returns the exit code: 0 when stopped by a signal."""
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping and not give_up():
            exited = [name for name, p in processes.items() if p.poll() is not None]
            if exited:
                announce(f"{', '.join(exited)} exited; stopping the others")
                break
            time.sleep(0.5)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        # A worker's delivery flush may take ~35 s to be answered and settled (compose gives it
        # 45 s for the same reason); killing it sooner makes the batch go again after its lease.
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in processes.values():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    code = max((p.returncode or 0 for p in processes.values()), default=0)
    return 0 if stopping else code or 1


def declare_embedded_queues(settings: Settings) -> None:
    """Create the embedded broker's queues before web, worker and beat start: kombu's SQLAlchemy
    transport creates a queue's row on first use, and two processes doing that at once make one
    of them fail on the unique name."""
    if not settings.broker_url.startswith("sqla+"):
        return
    from kombu import Connection, Exchange, Queue

    with Connection(settings.broker_url) as connection:
        channel = connection.default_channel
        for name in ALL_QUEUES:
            Queue(name, Exchange(name), routing_key=name)(channel).declare()
