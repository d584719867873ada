"""Commands that run the service: all of it at once, or one process of it; its schema and its
stored secrets."""

from __future__ import annotations

import os
import sys

import click

from app.cli.banner import run_banner
from app.core.config import load_settings
from app.core.processes import (
    LOCAL_HOST,
    beat_command,
    start_service,
    supervise,
    web_command,
    worker_command,
)
from app.core.queues import ALL_QUEUES, parse_queues

# Options these commands do not know are handed to gunicorn or celery as they are.
PASS_THROUGH = {"ignore_unknown_options": True}


@click.command()
@click.option("--host", default=LOCAL_HOST, show_default=True,
              help="the address the web listens on (0.0.0.0: every interface)")  # fmt: skip
@click.option("--port", envvar="PORT", default=8000, show_default=True,
              type=click.IntRange(1, 65535), help="the web port (env PORT)")  # fmt: skip
@click.option("--web-workers", default=2, show_default=True, type=click.IntRange(1),
              help="gunicorn worker processes")  # fmt: skip
def run(host: str, port: int, web_workers: int) -> None:
    """Start web, worker and beat together in this terminal (Ctrl-C stops all three).

    With DATABASE_URL and CELERY_BROKER_URL unset everything lives under ./var/ and needs no
    server: good for trying it out, limited to a few hundred events a second. Logs are short
    text lines on a terminal, JSON lines otherwise (LOG_FORMAT=json or text to choose).
    """
    settings = load_settings()
    processes = start_service(settings, port, web_workers, announce=click.echo, host=host)
    click.echo(run_banner(settings, host, port))
    sys.exit(supervise(processes, announce=lambda line: click.echo(line, err=True)))


@click.command(context_settings=PASS_THROUGH)
@click.option("--port", envvar="PORT", default=8000, show_default=True,
              type=click.IntRange(1, 65535),
              help="the port to listen on, on every interface (env PORT)")  # fmt: skip
@click.option("--workers", envvar="WEB_CONCURRENCY", default=4, show_default=True,
              type=click.IntRange(1), help="gunicorn workers (env WEB_CONCURRENCY)")  # fmt: skip
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
def web(port: int, workers: int, gunicorn_args: tuple[str, ...]) -> None:
    """The web process: webhooks, the admin API and the dashboard, under gunicorn."""
    _become(web_command(f"0.0.0.0:{port}", workers, extra=gunicorn_args))


@click.command(context_settings=PASS_THROUGH)
@click.option("-Q", "--queues", default=",".join(ALL_QUEUES), show_default=True,
              help="the queues to consume, comma-separated")  # fmt: skip
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(queues: str, celery_args: tuple[str, ...]) -> None:
    """A worker process (run as many as needed, on any machine; each on all queues or some)."""
    try:
        chosen = parse_queues(queues)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--queues") from None
    _become(worker_command(chosen, extra=celery_args))


@click.command(context_settings=PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    """The scheduler process (one; a second one waits for the first one's lock in Redis)."""
    _become(beat_command(extra=celery_args))


def _become(argv: list[str]) -> None:
    """Replace this process by `argv`: signals and the process id go straight to it."""
    sys.stdout.flush()
    os.execv(argv[0], argv)  # noqa: S606  # nosec B606 - built in app.core.processes


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database to the newest schema (safe to run again)."""
    from app.store.migrate import upgrade

    upgrade(load_settings().sqlalchemy_url)
    click.echo("database is at the newest schema")


@click.command()
def reencrypt() -> None:
    """Rewrite every stored secret under SECRET_KEY (safe to run again, and beside the service).

    To rotate the key: set SECRET_KEY to the new key and SECRET_KEY_PREVIOUS to the old one,
    restart, run this; then SECRET_KEY alone is enough. Fails, naming it, on a stored secret
    neither key opens.
    """
    from app.core.reencrypt import reencrypt_stored_secrets
    from app.core.secrets_box import SecretBox, SecretKeyMismatch

    settings = load_settings()
    box = SecretBox(settings.required_secret_key, previous=settings.secret_key_previous)
    try:
        rewritten = reencrypt_stored_secrets(settings.sqlalchemy_url, box)
    except SecretKeyMismatch as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"rewrote {rewritten} stored secrets under SECRET_KEY")
