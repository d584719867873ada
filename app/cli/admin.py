"""Commands that administer a running service: organizations, backfills, lists, dead letters.

Each runs the same app functions as the admin API, in an app context of its own. Imports are
inside the commands, so that `loke-sync --help` and the process commands start fast.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from app.core.services import Services
    from app.loke.client import LokeClient


@contextmanager
def _service() -> Iterator[tuple[Services, LokeClient]]:
    """The same services the API uses, for one command."""
    from app.core.services import current_services
    from app.factory import create_app
    from app.loke.client import current_loke_client

    with create_app().app_context():
        services = current_services()
        try:
            yield services, current_loke_client()
        finally:
            services.db.dispose()  # a command run in-process (tests) must not leave connections


@click.group()
def orgs() -> None:
    """Connected organizations."""


@orgs.command("list")
def orgs_list() -> None:
    """Connected organizations with their status, as JSON lines."""
    from sqlalchemy import select

    from app.orgs.status import status
    from app.store.models import Organization

    with _service() as (services, _), services.db.transaction() as session:
        for org in session.scalars(select(Organization).order_by(Organization.id)):
            click.echo(json.dumps(status(session, org)))


@orgs.command("discover")
def orgs_discover() -> None:
    """Organizations that installed the add-on at LOKE, marking the connected ones."""
    from sqlalchemy import select

    from app.store.models import Organization

    with _service() as (services, loke):
        with services.db.transaction() as session:
            connected = set(session.scalars(select(Organization.id).where(Organization.connected)))
        for org in loke.organizations():
            mark = "connected" if org.get("id") in connected else "-"
            click.echo(f"{org.get('id')}\t{mark}\t{org.get('name') or ''}")


@orgs.command("connect")
@click.argument("org_id")
@click.option("--url", help="the CRM endpoint of an http destination")
@click.option("--secret", envvar="DESTINATION_SECRET", help="signs each batch (http)")
@click.option("--batch-size", default=100, show_default=True, help="operations a batch (http)")
@click.option("--max-requests-per-second", default=10.0, show_default=True, help="(http)")
@click.option("--hubspot-token", envvar="HUBSPOT_ACCESS_TOKEN",
              help="deliver to HubSpot with this service key or private app token")  # fmt: skip
@click.option("--hubspot-base-url", help="another HubSpot API server (tests, staging)")
@click.option("--requests-per-ten-seconds", default=100, show_default=True,
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
        created = connect(services, loke, org_id, body)
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
        while follow:
            with services.db.transaction() as session:
                run = backfill_runs.progress(session.get(BackfillRun, started.run_id))
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
    payments = f" · payments {run['payments']:,}" if run.get("phase") == "payments" else ""
    return (f"[{bar}] {run['status']} · pages {run['pages']} · customers {run['customers']:,}"
            f" · {run['customersPerSecond']:,.0f}/s{payments}")  # fmt: skip


@click.group("dead-letters")
def dead_letters() -> None:
    """What could not be applied or delivered."""


@dead_letters.command("list")
@click.option("--org", "org_id", help="only this organization")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
def dead_letters_list(org_id: str | None, limit: int) -> None:
    """Newest dead letters first, one line each."""
    from app.deadletters.listing import listing

    with _service() as (services, _), services.db.transaction() as session:
        for letter in listing(session, org_id, limit):
            replayed = f" (replayed {letter.replay_count}x)" if letter.replay_count else ""
            click.echo(f"{letter.id}\t{letter.org_id}\t{letter.kind}\t{letter.reason}{replayed}")


@dead_letters.command("replay")
@click.argument("letter_id", type=int, required=False)
@click.option("--all", "every", is_flag=True, help="every dead letter not replayed yet")
@click.option("--org", "org_id", help="with --all: only this organization's")
@click.option("--reason", help="with --all: only those whose reason contains this")
def dead_letters_replay(
    letter_id: int | None, every: bool, org_id: str | None, reason: str | None
) -> None:
    """Send a dead letter's work again, or with --all every waiting one (rebuilt from the
    newest state)."""
    from pydantic import ValidationError

    from app.core.validation import summary
    from app.deadletters.replay import ReplayFilter, replay_matching, replay_now

    if (letter_id is None) == (not every):
        raise click.UsageError("give a dead letter's id, or --all")
    if letter_id is not None and (org_id or reason):
        raise click.UsageError("--org and --reason go with --all")
    try:
        which = ReplayFilter(org_id=org_id, reason=reason)
    except ValidationError as exc:
        raise click.UsageError(summary(exc)) from exc
    with _service() as (services, _):
        if letter_id is None:
            count = replay_matching(services, which)
            click.echo(f"{count} dead letters queued again")
            return
        if not replay_now(services, letter_id):
            raise click.ClickException(f"dead letter {letter_id} does not exist")
    click.echo(f"dead letter {letter_id} queued again")


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
        raise click.ClickException(f"organization {org_id} is not connected or chose no lists")
    for run in started:
        state = "started" if run.started else "already running"
        click.echo(f"list {run.list_id}: resync {run.run_id} {state}")


@click.command("status")
def status_command() -> None:
    """One line per organization: subscription, backfill, backlog, lag, dead letters."""
    from sqlalchemy import select

    from app.orgs.status import status
    from app.store.models import Organization

    with _service() as (services, _), services.db.transaction() as session:
        listed = list(session.scalars(select(Organization).order_by(Organization.id)))
        if not listed:
            click.echo("no organizations yet: loke-sync orgs discover, then orgs connect")
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
