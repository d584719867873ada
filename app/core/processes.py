"""The service's processes: the command line of each (web, worker, beat), and running them
together under one supervisor (`loke-sync run`, `loke-sync demo`).

The one place that knows how they are started: the Procfile, compose, the tests and the benches
all start them through `loke-sync web|worker|beat`, which runs the command lines built here.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess  # nosec B404 - our own fixed command lines, nothing from outside
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from app.core.config import Settings
from app.core.logs import PROCESS_ENV, child_environment
from app.core.queues import ALL_QUEUES, QueueName

CELERY_APP = "workers.worker"
WSGI_APP = "app.wsgi:app"
STOP_GRACE_SECONDS = 45  # what `run` waits for its processes to stop before killing them
# `run` and `demo` serve this machine only unless told otherwise (`--host`); `loke-sync web`,
# the Procfile's and compose's, serves every interface.
LOCAL_HOST = "127.0.0.1"


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
    host: str = LOCAL_HOST,
) -> dict[str, subprocess.Popen[bytes]]:
    """Migrate, then start web (on `host`:`port`), worker and beat as children of this process
    (their output to `output`, else to this terminal), telling `announce` where the data is."""
    from app.store.migrate import upgrade  # (alembic is slow to import: only this command needs it)

    upgrade(settings.sqlalchemy_url)
    declare_embedded_queues(settings)
    # The embedded broker suits threads: every prefork child would poll SQLite on its own.
    pool = ["-P", "threads", "-c", "4"] if settings.embedded else []
    commands = {
        "web": web_command(bind_address(host, port), web_workers, access_log=False),
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
    # Text or JSON is decided here, from where their lines go: a child's own stdout is not a
    # terminal when it is piped, even if this one is.
    log_env = child_environment(settings.log_format, sys.stdout if output is None else output)
    return {
        name: subprocess.Popen(  # nosec B603
            argv, stdout=output, stderr=output, env={**os.environ, **log_env, PROCESS_ENV: name}
        )
        for name, argv in commands.items()
    }


def bind_address(host: str, port: int) -> str:
    """gunicorn's `--bind` for `host` (an IPv6 address in brackets) and `port`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def browse_url(host: str, port: int) -> str:
    """The address a browser on this machine opens for a server listening on `host`:`port`
    (every interface, 0.0.0.0 or ::, includes the loopback one)."""
    try:
        address = ipaddress.ip_address(host or LOCAL_HOST)
    except ValueError:  # a name: localhost, the machine's name
        return f"http://{host}:{port}/"
    if address.is_unspecified:
        address = ipaddress.ip_address(LOCAL_HOST)
    return f"http://{address if address.version == 4 else f'[{address}]'}:{port}/"


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
