"""The `loke-sync` command group: the service's processes, its administration, the dev tools."""

from __future__ import annotations

import click

from app.cli import admin, service
from devtools import commands as devtools_commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Sync LOKE organizations' customers, payments and lists into a CRM."""


for command in (
    service.run,
    service.web,
    service.worker,
    service.beat,
    service.db,
    service.reencrypt,
    admin.orgs,
    admin.backfill_command,
    admin.dead_letters,
    admin.lists_group,
    admin.status_command,
    devtools_commands.sandbox_command,
    devtools_commands.demo_command,
):
    main.add_command(command)
