"""`loke-sync sandbox` and `loke-sync demo`: the developer tools' commands.

Their imports are inside the commands, so that the service's own commands start fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

if TYPE_CHECKING:
    from devtools.sandbox.standalone import Activity


def _activity_options(command: Callable[..., None]) -> Callable[..., None]:
    """The simulated organization's options, shared by `sandbox` and `demo`."""
    options = [
        click.option("--seed", default=1, show_default=True, type=int,
                     help="same seed, same organization"),
        click.option("--customers", default=2000, show_default=True, type=click.IntRange(1),
                     help="customers of the simulated organization"),
        click.option("--rate", default=5.0, show_default=True, type=click.FloatRange(0),
                     help="webhook events a second once subscribed (0: none)"),
        click.option("--max-events", default=0, show_default=True, type=click.IntRange(0),
                     help="stop firing after this many events (0: never)"),
        click.option("--busy-seconds", default=20.0, show_default=True, type=click.FloatRange(0),
                     help="events come in waves: this long busy ..."),
        click.option("--quiet-seconds", default=10.0, show_default=True, type=click.FloatRange(0),
                     help="... then this long quiet (0: a steady stream)"),
        click.option("--list-churn-seconds", default=150.0, show_default=True,
                     type=click.FloatRange(0),
                     help="how often list membership changes (0: never); longer than the "
                          "service's 60 s list resync, so the CRM catches up between changes"),
        click.option("--duplicates", default=0.05, show_default=True, type=click.FloatRange(0, 1),
                     help="share of webhooks delivered twice"),
        click.option("--out-of-order", default=0.1, show_default=True, type=click.FloatRange(0, 1),
                     help="share of webhooks held back so later ones overtake them"),
        click.option("--lost-payments", default=0.0, show_default=True,
                     type=click.FloatRange(0, 1),
                     help="share of payment webhooks never delivered (reconciliation heals them)"),
        click.option("--retry-base-seconds", default=10.0, show_default=True,
                     type=click.FloatRange(0.01), help="LOKE's first retry delay (then x2)"),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def _activity(values: dict[str, Any]) -> Activity:
    from devtools.sandbox.standalone import Activity

    return Activity(**values)


@click.command("sandbox")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(1, 65535),
              help="the port of the simulated LOKE (API, tokens)")  # fmt: skip
@click.option("--org", "org_id", default="org-sandbox", show_default=True,
              help="the simulated organization's id")  # fmt: skip
@click.option("--org-name", default="Sandbox Bistro", show_default=True,
              help="the simulated organization's name")  # fmt: skip
@click.option("--client-id", default="sandbox-addon", show_default=True,
              help="the add-on's client id it accepts (LOKE_CLIENT_ID)")  # fmt: skip
@click.option("--client-secret", default="sandbox-secret", show_default=True,
              help="the add-on's client secret it accepts (LOKE_CLIENT_SECRET)")  # fmt: skip
@click.option("--list", "lists", multiple=True, default=["VIP guests=100", "Newsletter=500"],
              show_default=True,
              help="a customer list of the organization, NAME=SIZE; repeatable")  # fmt: skip
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
    from devtools.sandbox.standalone import serve

    sizes = []
    for spec in lists:
        name, _, size = spec.rpartition("=")
        if not name or not size.isdigit():
            raise click.BadParameter(f"{spec!r} is not NAME=SIZE", param_hint="--list")
        sizes.append((name, int(size)))
    serve(_activity(activity), port, client_id, client_secret, org_id, org_name, sizes, click.echo)


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="the address the dashboard listens on (0.0.0.0: every interface)")  # fmt: skip
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535),
              help="the service's web port (the dashboard)")  # fmt: skip
@click.option("--sandbox-port", default=8001, show_default=True, type=click.IntRange(1, 65535),
              help="the simulated LOKE's port")  # fmt: skip
@click.option("--crm", "crm_kind", type=click.Choice(["http", "hubspot"]), default="http",
              show_default=True,
              help="the demo CRM: the http destination's, or a fake HubSpot")  # fmt: skip
@click.option("--crm-port", default=8002, show_default=True, type=click.IntRange(1, 65535),
              help="the demo CRM's port (its API and its page)")  # fmt: skip
@click.option("--var-dir", default="var/demo", show_default=True, type=click.Path(),
              help="embedded data of the demo, wiped at every start")  # fmt: skip
@click.option("--web-workers", default=2, show_default=True, type=click.IntRange(1),
              help="gunicorn worker processes")  # fmt: skip
@_activity_options
def demo_command(
    host: str,
    port: int,
    sandbox_port: int,
    crm_kind: Literal["http", "hubspot"],
    crm_port: int,
    var_dir: str,
    web_workers: int,
    **activity: Any,
) -> None:
    """Sandbox LOKE + web, worker, beat + a demo CRM, connected: watch it sync (no servers)."""
    from devtools.demo.runner import Ports, run_demo

    ports = Ports(port, sandbox_port, crm_port, host)
    run_demo(_activity(activity), ports, Path(var_dir), web_workers, crm_kind)
