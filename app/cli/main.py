"""The `loke-sync` command group: the service's processes, its administration, the dev tools."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import click

from app.cli import admin, dead_letters, service, webhook
from app.cli.errors import OneLineErrors
from devtools import commands as devtools_commands

DISTRIBUTION = "loke-crm-sync"


def installed_version() -> str:
    """The version pip installed (pyproject.toml's), or a note that it is not installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout with `python -m app.cli`, not installed
        return "unknown (not installed: pip install -e .)"


def _print_version(ctx: click.Context, _param: click.Parameter, wanted: bool) -> None:
    if wanted and not ctx.resilient_parsing:
        click.echo(f"loke-sync {installed_version()}")
        ctx.exit()


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show the version and exit.")  # fmt: skip
def main() -> None:
    """Sync LOKE organizations' customers, payments and lists into a CRM.

    A command that fails prints one line, `Error: ...`, and exits with status 1 (2 for a
    mistake in the command line); LOKE_SYNC_DEBUG=1 shows the traceback instead.
    """


for command in (
    service.run,
    service.web,
    service.worker,
    service.beat,
    service.db,
    service.reencrypt,
    admin.orgs,
    admin.backfill_command,
    dead_letters.dead_letters,
    admin.lists_group,
    admin.status_command,
    webhook.webhook,
    devtools_commands.sandbox_command,
    devtools_commands.demo_command,
):
    main.add_command(command)
