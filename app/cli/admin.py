"""Commands that administer a running service: organizations, backfills, lists (dead letters
are in app/cli/dead_letters.py).

Each runs the same app functions as the admin API, in an app context of its own. Imports are
inside the commands, so that `loke-sync --help` and the process commands start fast.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click

from app.cli.context import service_context as _service

if TYPE_CHECKING:
    from app.core.services import Services

NO_ORGS = "no organizations yet: loke-sync orgs discover, then orgs connect"


@click.group()
def orgs() -> None:
    """Connected organizations."""


@orgs.command("list")
@click.option("--json", "as_json", is_flag=True,
              help='as GET /api/orgs answers: {"orgs": [...]} (for scripts)')  # fmt: skip
def orgs_list(as_json: bool) -> None:
    """Known organizations with their status: a table, or JSON with --json."""
    from sqlalchemy import select

    from app.cli.tables import organizations_table
    from app.orgs.status import status
    from app.store.models import Organization

    with _service() as (services, _), services.db.transaction() as session:
        known = session.scalars(select(Organization).order_by(Organization.id))
        states = [status(session, org) for org in known]
    if as_json:
        click.echo(json.dumps({"orgs": states}, indent=2))
    else:
        click.echo(organizations_table(states) if states else NO_ORGS)


@orgs.command("discover")
def orgs_discover() -> None:
    """Organizations that installed the add-on at LOKE, marking the connected ones."""
    from sqlalchemy import select

    from app.store.models import Organization

    with _service() as (services, loke):
        with services.db.transaction() as session:
            connected = set(session.scalars(select(Organization.id).where(Organization.connected)))
        installed = loke.organizations()
        for org in installed:
            mark = "connected" if org.get("id") in connected else "-"
            click.echo(f"{org.get('id')}\t{mark}\t{org.get('name') or ''}")
    if not installed:
        click.echo("no organization has installed the add-on at LOKE yet")


@orgs.command("connect")
@click.argument("org_id")
@click.option("--url", help="the CRM endpoint of an http destination")
@click.option("--secret", envvar="DESTINATION_SECRET",
              help="signs each batch (http); 8 to 500 characters")  # fmt: skip
@click.option("--batch-size", default=100, show_default=True, type=click.IntRange(1, 1000),
              help="operations a batch (http)")  # fmt: skip
@click.option("--max-requests-per-second", default=10.0, show_default=True,
              type=click.FloatRange(0, 1000, min_open=True),
              help="the CRM account's allowance (http)")  # fmt: skip
@click.option("--hubspot-token", envvar="HUBSPOT_ACCESS_TOKEN",
              help="deliver to HubSpot with this service key or private app token")  # fmt: skip
@click.option("--hubspot-base-url", help="another HubSpot API server (tests, staging)")
@click.option("--requests-per-ten-seconds", default=100, show_default=True, type=click.IntRange(1),
              help="the HubSpot token's allowance (190 on Pro and Enterprise)")  # fmt: skip
@click.option("--list-name-prefix", default="LOKE: ", show_default=True,
              help="HubSpot lists are named this and the LOKE list's name")  # fmt: skip
@click.option("--payment-history-since", default="365", show_default=True,
              help="payments to read: days back, an ISO date, 'all' or 0 (none)")  # fmt: skip
def orgs_connect(
    org_id: str, url: str | None, secret: str | None, batch_size: int,
    max_requests_per_second: float, hubspot_token: str | None, hubspot_base_url: str | None,
    requests_per_ten_seconds: int, list_name_prefix: str, payment_history_since: str,
) -> None:  # fmt: skip
    """Connect an organization to an http destination (--url, --secret) or to HubSpot
    (--hubspot-token): subscribe its webhooks at LOKE and start its backfill."""
    from app.orgs.connect import connect
    from app.orgs.refusals import ConnectRefused

    destination: dict[str, object]
    if hubspot_token and not url:
        destination = {"type": "hubspot", "accessToken": hubspot_token,
                       "requestsPerTenSeconds": requests_per_ten_seconds,
                       "listNamePrefix": list_name_prefix}  # fmt: skip
        if hubspot_base_url:
            destination["baseUrl"] = hubspot_base_url
    elif url and secret and not hubspot_token:
        destination = {"type": "http", "url": url, "secret": secret, "batchSize": batch_size,
                       "maxRequestsPerSecond": max_requests_per_second}  # fmt: skip
    else:
        raise click.UsageError("give either --url and --secret (http) or --hubspot-token")
    history: int | str | None = payment_history_since
    if payment_history_since == "all":
        history = None
    elif payment_history_since.isdigit():
        history = int(payment_history_since)
    body = {"destination": destination, "paymentHistorySince": history}
    with _service() as (services, loke):
        try:
            created = connect(services, loke, org_id, body)
        except ConnectRefused as exc:  # nothing was connected: say why, exit 1
            raise click.ClickException(str(exc)) from None
    click.echo(f"{org_id} {'connected; backfill started' if created else 'updated'}")


@orgs.command("disconnect")
@click.argument("org_id")
@click.option("--purge", is_flag=True, help="also delete everything stored for it")
def orgs_disconnect(org_id: str, purge: bool) -> None:
    """Delete the LOKE subscription and stop syncing an organization."""
    from app.orgs.connect import disconnect

    with _service() as (services, loke):
        done = disconnect(services, loke, org_id, purge)
    if done is None:
        raise click.ClickException(f"organization {org_id} is not known")
    refused = "" if done.unsubscribed else f" (LOKE refused the unsubscribe: {done.loke_error})"
    click.echo(f"{org_id} disconnected{' and purged' if purge else ''}{refused}")


@orgs.command("rotate-secret")
@click.argument("org_id")
def orgs_rotate_secret(org_id: str) -> None:
    """Give an organization a new webhook secret at LOKE; the old one is accepted for
    WEBHOOK_SECRET_GRACE_SECONDS more."""
    from app.orgs.secret_rotation import NotConnected, RotationRefused, rotate

    with _service() as (services, loke):
        try:
            until = rotate(services, loke, org_id)
        except NotConnected:
            raise click.ClickException(f"organization {org_id} is not connected") from None
        except RotationRefused as exc:
            raise click.ClickException(f"not rotated: LOKE refused the new secret: {exc}") from None
    click.echo(f"{org_id}: webhook secret rotated; the old one is valid until {until.isoformat()}")


@click.command("backfill")
@click.argument("org_id")
@click.option("--follow", is_flag=True, help="show progress until the backfill finishes")
def backfill_command(org_id: str, follow: bool) -> None:
    """Start a full backfill of an organization's customers, then its payment history (or
    resume a failed one)."""
    from app.backfill import runs as backfill_runs
    from app.store.models import BackfillRun

    with _service() as (services, _):
        try:
            started = backfill_runs.start(services, org_id)
        except backfill_runs.NotConnected:
            raise click.ClickException(f"organization {org_id} is not connected") from None
        click.echo(
            ("started" if started.started else "already running") + f": run {started.run_id}"
        )
        shown_error: tuple[int, str] | None = None
        while follow:
            with services.db.transaction() as session:
                run = backfill_runs.progress(session.get(BackfillRun, started.run_id))
            if run is None:
                raise click.ClickException(f"backfill {started.run_id} disappeared")
            failure = (run["attempts"], run["lastError"])
            if run["status"] == "running" and run["lastError"] and failure != shown_error:
                # On a line of its own, kept on screen (the bar's line is overwritten): a run
                # that retries a page says why, and how many tries it has left.
                shown_error = failure
                tries = services.settings.backfill_page_attempts
                click.echo(f"\r{_progress_line(run)}\n  page failed (try {run['attempts']} of"
                           f" {tries}; retrying): {run['lastError']}")  # fmt: skip
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
    payments = f" · payments {run['payments']:,}" if run.get("phase") == "payments" else ""
    return (f"[{bar}] {run['status']} · pages {run['pages']} · customers {run['customers']:,}"
            f" · {run['customersPerSecond']:,.0f}/s{payments}")  # fmt: skip


@click.group("lists")
def lists_group() -> None:
    """Customer list membership."""


@lists_group.command("sync")
@click.argument("org_id")
def lists_sync(org_id: str) -> None:
    """Resync the organization's chosen lists now (joins resyncs already running)."""
    from app.lists.runs import start_chosen

    with _service() as (services, _):
        started = start_chosen(services, org_id)
        if not started:
            raise click.ClickException(_why_no_resync(services, org_id))
    for run in started:
        state = "started" if run.started else "already running"
        click.echo(f"list {run.list_id}: resync {run.run_id} {state}")


def _why_no_resync(services: Services, org_id: str) -> str:
    """Which of the reasons `start_chosen` found nothing to start for it is."""
    from app.store.models import Organization

    with services.db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None or not org.connected:
            return f"organization {org_id} is {'not known' if org is None else 'not connected'}"
    return (f"organization {org_id} chose no lists to sync: choose them on its dashboard page"
            f" or with PUT /api/orgs/{org_id} {{\"lists\": [...]}}")  # fmt: skip


@click.command("status")
def status_command() -> None:
    """One line per organization: subscription, backfill, backlog, lag, dead letters."""
    from sqlalchemy import select

    from app.orgs.status import status
    from app.store.models import Organization

    with _service() as (services, _), services.db.transaction() as session:
        listed = list(session.scalars(select(Organization).order_by(Organization.id)))
        if not listed:
            click.echo(NO_ORGS)
        for org in listed:
            state = status(session, org)
            backfill = state["backfill"] or {}
            delivery = state["delivery"]
            click.echo(
                f"{org.id}: {'connected' if org.connected else 'disconnected'}"
                f" · subscription {state['subscription']['status']}"
                f" · backfill {backfill.get('status', 'never')} {backfill.get('customers', 0):,}"
                f" · backlog {delivery['backlog']:,} · lag {delivery['lagSeconds']:.0f}s"
                f" · dead letters {delivery['deadLetters']}"
            )
