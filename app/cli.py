"""`loke-sync`: the command line for people who run the service."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess  # nosec B404
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import click

from app.config import Settings, load_settings
from app.loke.client import LokeClient
from app.services import Services

QUEUES = "events,delivery,backfill,lists"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Sync LOKE organizations' customers, payments and lists into a CRM."""


@main.command()
@click.option("--port", default=lambda: int(os.environ.get("PORT", "8000")), show_default="8000")
@click.option("--web-workers", default=2, show_default=True, help="gunicorn worker processes")
def run(port: int, web_workers: int) -> None:
    """Start web, worker and beat together in this terminal (Ctrl-C stops all three).

    With DATABASE_URL and CELERY_BROKER_URL unset everything lives under ./var/ and needs no
    server: good for trying it out, limited to a few hundred events a second.
    """
    settings = load_settings()
    sys.exit(supervise(start_service(settings, port, web_workers)))


def start_service(
    settings: Settings, port: int, web_workers: int, output: IO[bytes] | None = None
) -> dict[str, subprocess.Popen[bytes]]:
    """Migrate, then start web, worker and beat as children of this process (their output to
    `output`, else to this terminal)."""
    _upgrade(settings.sqlalchemy_url)
    _declare_embedded_queues(settings)
    python = sys.executable
    pool = ["-P", "threads", "-c", "4"] if settings.embedded else []
    commands = {
        "web": [
            python, "-m", "gunicorn", "app.wsgi:app", "--bind", f"0.0.0.0:{port}",
            "--workers", str(web_workers), "--no-control-socket",
        ],
        "worker": [python, "-m", "celery", "--quiet", "-A", "workers.worker", "worker",
                   "-Q", QUEUES, *pool],
        "beat": [python, "-m", "celery", "--quiet", "-A", "workers.worker", "beat"],
    }  # fmt: skip
    # web, worker and beat share one metrics directory, so /metrics shows all three.
    metrics = settings.var_dir / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics.resolve()))
    if settings.embedded:
        click.echo(f"embedded mode: data under {settings.var_dir.resolve()}/")
        click.echo(f"admin token: {settings.admin_token}")
    click.echo(f"webhooks: http://localhost:{port}/webhooks/loke/<orgId>")
    # Our own fixed command lines, nothing from outside.
    return {
        name: subprocess.Popen(argv, stdout=output, stderr=output)  # nosec
        for name, argv in commands.items()
    }


def supervise(
    processes: dict[str, subprocess.Popen[bytes]], give_up: Callable[[], bool] = lambda: False
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
                click.echo(f"{', '.join(exited)} exited; stopping the others", err=True)
                break
            time.sleep(0.5)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 20
        for process in processes.values():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    code = max((p.returncode or 0 for p in processes.values()), default=0)
    return 0 if stopping else code or 1


def _declare_embedded_queues(settings: Settings) -> None:
    """The embedded broker (kombu's SQLAlchemy transport) creates a queue's row the first time
    a process uses it, and two processes doing that at once make one fail on the unique name
    (a worker starting beside the web exited with IntegrityError on kombu_queue.name). Create
    them here, before web, worker and beat start."""
    if not settings.broker_url.startswith("sqla+"):
        return
    from kombu import Connection, Exchange, Queue

    with Connection(settings.broker_url) as connection:
        channel = connection.default_channel
        for name in QUEUES.split(","):
            Queue(name, Exchange(name), routing_key=name)(channel).declare()


def _upgrade(url: str) -> None:
    from app.migrate import upgrade

    upgrade(url)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database to the newest schema (safe to run again)."""
    _upgrade(load_settings().sqlalchemy_url)
    click.echo("database is at the newest schema")


@main.group()
def orgs() -> None:
    """Connected organizations."""


@contextmanager
def _service() -> Iterator[tuple[Services, LokeClient]]:
    """The same services the API uses, for one command."""
    from app import create_app, loke_client, services

    with create_app().app_context():
        yield services(), loke_client()


@orgs.command("list")
def orgs_list() -> None:
    """Connected organizations with their status, as JSON lines."""
    from sqlalchemy import select

    from app import orgs as org_service
    from app.models import Organization

    with _service() as (found, _), found.db.transaction() as session:
        for org in session.scalars(select(Organization).order_by(Organization.id)):
            click.echo(json.dumps(org_service.status(session, org)))


@orgs.command("discover")
def orgs_discover() -> None:
    """Organizations that installed the add-on at LOKE, marking the connected ones."""
    from sqlalchemy import select

    from app.models import Organization

    with _service() as (found, loke):
        with found.db.transaction() as session:
            connected = set(session.scalars(select(Organization.id).where(Organization.connected)))
        for org in loke.organizations():
            mark = "connected" if org.get("id") in connected else "-"
            click.echo(f"{org.get('id')}\t{mark}\t{org.get('name') or ''}")


@orgs.command("connect")
@click.argument("org_id")
@click.option("--url", required=True, help="the CRM endpoint of the http destination")
@click.option("--secret", required=True, envvar="DESTINATION_SECRET", help="signs each batch")
@click.option("--batch-size", default=100, show_default=True)
@click.option("--max-requests-per-second", default=10.0, show_default=True)
def orgs_connect(
    org_id: str, url: str, secret: str, batch_size: int, max_requests_per_second: float
) -> None:
    """Connect an organization: subscribe its webhooks at LOKE and start its backfill."""
    from app import orgs as org_service

    destination = {"type": "http", "url": url, "secret": secret, "batchSize": batch_size,
                   "maxRequestsPerSecond": max_requests_per_second}  # fmt: skip
    with _service() as (found, loke):
        created = org_service.connect(found, loke, org_id, {"destination": destination})
    click.echo(f"{org_id} {'connected; backfill started' if created else 'updated'}")


@orgs.command("disconnect")
@click.argument("org_id")
@click.option("--purge", is_flag=True, help="also delete everything stored for it")
def orgs_disconnect(org_id: str, purge: bool) -> None:
    """Delete the LOKE subscription and stop syncing an organization."""
    from app import orgs as org_service

    with _service() as (found, loke):
        if not org_service.disconnect(found, loke, org_id, purge):
            raise click.ClickException(f"organization {org_id} is not known")
    click.echo(f"{org_id} disconnected{' and purged' if purge else ''}")


@main.command("backfill")
@click.argument("org_id")
@click.option("--follow", is_flag=True, help="show progress until the backfill finishes")
def backfill_command(org_id: str, follow: bool) -> None:
    """Start a full backfill of an organization's customers (or resume a failed one)."""
    from app import backfill
    from app.models import BackfillRun

    with _service() as (found, _):
        try:
            started = backfill.start(found, org_id)
        except backfill.NotConnected:
            raise click.ClickException(f"organization {org_id} is not connected") from None
        click.echo(
            ("started" if started.started else "already running") + f": run {started.run_id}"
        )
        while follow:
            with found.db.transaction() as session:
                run = backfill.progress(session.get(BackfillRun, started.run_id))
            if run is None:
                raise click.ClickException(f"backfill {started.run_id} disappeared")
            click.echo("\r" + _progress_line(run), nl=False)
            if run["status"] != "running":
                click.echo()
                if run["status"] == "failed":
                    raise click.ClickException(f"backfill failed: {run['lastError']}")
                return
            time.sleep(1)


def _progress_line(run: dict[str, Any]) -> str:
    # LOKE gives no total count: the bar moves a notch per page and fills when it finishes.
    width = 30
    filled = width if run["status"] == "finished" else run["pages"] % width
    bar = "#" * filled + "." * (width - filled)
    return (f"[{bar}] {run['status']} · pages {run['pages']} · customers {run['customers']:,}"
            f" · {run['customersPerSecond']:,.0f}/s")  # fmt: skip


@main.group("dead-letters")
def dead_letters() -> None:
    """What could not be applied or delivered."""


@dead_letters.command("list")
@click.option("--org", "org_id", help="only this organization")
@click.option("--limit", default=50, show_default=True)
def dead_letters_list(org_id: str | None, limit: int) -> None:
    """Newest dead letters first, one line each."""
    from app import create_app, deadletters, services

    with create_app().app_context(), services().db.transaction() as session:
        for letter in deadletters.listing(session, org_id, limit):
            replayed = f" (replayed {letter.replay_count}x)" if letter.replay_count else ""
            click.echo(f"{letter.id}\t{letter.org_id}\t{letter.kind}\t{letter.reason}{replayed}")


@dead_letters.command("replay")
@click.argument("letter_id", type=int)
def dead_letters_replay(letter_id: int) -> None:
    """Send a dead letter's work again (rebuilt from the newest state)."""
    from app import create_app, deadletters, services

    with create_app().app_context():
        if not deadletters.replay_now(services(), letter_id):
            raise click.ClickException(f"dead letter {letter_id} does not exist")
    click.echo(f"dead letter {letter_id} queued again")


@main.group("lists")
def lists_group() -> None:
    """Customer list membership."""


@lists_group.command("sync")
@click.argument("org_id")
def lists_sync(org_id: str) -> None:
    """Resync the organization's chosen lists now (joins resyncs already running)."""
    from app import lists

    with _service() as (found, _):
        started = lists.start_chosen(found, org_id)
    if not started:
        raise click.ClickException(f"organization {org_id} is not connected or chose no lists")
    for run in started:
        state = "started" if run.started else "already running"
        click.echo(f"list {run.list_id}: resync {run.run_id} {state}")


@main.command("status")
def status_command() -> None:
    """One line per organization: subscription, backfill, backlog, lag, dead letters."""
    from sqlalchemy import select

    from app import orgs as org_service
    from app.models import Organization

    with _service() as (found, _), found.db.transaction() as session:
        listed = list(session.scalars(select(Organization).order_by(Organization.id)))
        if not listed:
            click.echo("no organizations yet: loke-sync orgs discover, then orgs connect")
        for org in listed:
            state = org_service.status(session, org)
            backfill = state["backfill"] or {}
            delivery = state["delivery"]
            click.echo(
                f"{org.id}: {'connected' if org.connected else 'disconnected'}"
                f" · subscription {state['subscription']['status']}"
                f" · backfill {backfill.get('status', 'never')} {backfill.get('customers', 0):,}"
                f" · backlog {delivery['backlog']:,} · lag {delivery['lagSeconds']:.0f}s"
                f" · dead letters {delivery['deadLetters']}"
            )


def _activity_options(command: Callable[..., None]) -> Callable[..., None]:
    """The simulated organization's options, shared by `sandbox` and `demo`."""
    options = [
        click.option("--seed", default=1, show_default=True, help="same seed, same organization"),
        click.option("--customers", default=2000, show_default=True, type=click.IntRange(1)),
        click.option("--rate", default=5.0, show_default=True, type=click.FloatRange(0),
                     help="webhook events a second once subscribed (0: none)"),
        click.option("--max-events", default=0, show_default=True, type=click.IntRange(0),
                     help="stop firing after this many events (0: never)"),
        click.option("--busy-seconds", default=20.0, show_default=True, type=click.FloatRange(0),
                     help="events come in waves: this long busy ..."),
        click.option("--quiet-seconds", default=10.0, show_default=True, type=click.FloatRange(0),
                     help="... then this long quiet (0: a steady stream)"),
        click.option("--list-churn-seconds", default=45.0, show_default=True,
                     type=click.FloatRange(0), help="how often list membership changes (0: never)"),
        click.option("--duplicates", default=0.05, show_default=True, type=click.FloatRange(0, 1),
                     help="share of webhooks delivered twice"),
        click.option("--out-of-order", default=0.1, show_default=True, type=click.FloatRange(0, 1),
                     help="share of webhooks held back so later ones overtake them"),
        click.option("--retry-base-seconds", default=10.0, show_default=True,
                     type=click.FloatRange(0.01), help="LOKE's first retry delay (then x2)"),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def _activity(values: dict[str, Any]) -> Any:
    from app.sandbox.standalone import Activity

    return Activity(**values)


@main.command("sandbox")
@click.option("--port", default=8001, show_default=True)
@click.option("--org", "org_id", default="org-sandbox", show_default=True)
@click.option("--org-name", default="Sandbox Bistro", show_default=True)
@click.option("--client-id", default="sandbox-addon", show_default=True)
@click.option("--client-secret", default="sandbox-secret", show_default=True)
@click.option("--list", "lists", multiple=True, default=["VIP guests=100", "Newsletter=500"],
              show_default=True, help="NAME=SIZE, repeatable")  # fmt: skip
@_activity_options
def sandbox_command(
    port: int,
    org_id: str,
    org_name: str,
    client_id: str,
    client_secret: str,
    lists: tuple[str, ...],
    **activity: Any,
) -> None:
    """A simulated LOKE on a local port: API, tokens, paging, and signed webhooks."""
    from app.sandbox.standalone import serve

    sizes = []
    for spec in lists:
        name, _, size = spec.rpartition("=")
        if not name or not size.isdigit():
            raise click.BadParameter(f"{spec!r} is not NAME=SIZE", param_hint="--list")
        sizes.append((name, int(size)))
    serve(_activity(activity), port, client_id, client_secret, org_id, org_name, sizes, click.echo)


@main.command("demo")
@click.option("--port", default=8000, show_default=True, help="the service's web port")
@click.option("--sandbox-port", default=8001, show_default=True)
@click.option("--crm-port", default=8002, show_default=True)
@click.option("--var-dir", default="var/demo", show_default=True, type=click.Path(),
              help="embedded data of the demo, wiped at every start")  # fmt: skip
@click.option("--web-workers", default=2, show_default=True)
@_activity_options
def demo_command(
    port: int, sandbox_port: int, crm_port: int, var_dir: str, web_workers: int, **activity: Any
) -> None:
    """Sandbox LOKE + web, worker, beat + a demo CRM, connected: watch it sync (no servers)."""
    from pathlib import Path

    from app.demo.runner import Ports, run_demo

    run_demo(_activity(activity), Ports(port, sandbox_port, crm_port), Path(var_dir), web_workers)
