"""`loke-sync dead-letters`: what could not be applied or delivered, and sending it again."""

from __future__ import annotations

import click

from app.cli.context import service_context


@click.group("dead-letters")
def dead_letters() -> None:
    """What could not be applied or delivered."""


@dead_letters.command("list")
@click.option("--org", "org_id", help="only this organization's")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000),
              help="at most this many, newest first")  # fmt: skip
def dead_letters_list(org_id: str | None, limit: int) -> None:
    """Newest dead letters first, one line each: id, organization, kind, reason."""
    from app.deadletters.listing import listing

    with service_context() as (services, _), services.db.transaction() as session:
        letters = listing(session, org_id, limit)
        for letter in letters:
            replayed = f" (replayed {letter.replay_count}x)" if letter.replay_count else ""
            click.echo(f"{letter.id}\t{letter.org_id}\t{letter.kind}\t{letter.reason}{replayed}")
    if not letters:
        click.echo(f"no dead letters{f' of {org_id}' if org_id else ''}")


@dead_letters.command("replay")
@click.argument("letter_id", type=click.IntRange(1), required=False)
@click.option("--all", "every", is_flag=True, help="every dead letter not replayed yet")
@click.option("--org", "org_id", help="with --all: only this organization's")
@click.option("--reason", help="with --all: only those whose reason contains this (any case)")
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
    with service_context() as (services, _):
        if letter_id is None:
            count = replay_matching(services, which)
            click.echo(f"{count} dead letters queued again" if count else "no dead letters match")
            return
        if not replay_now(services, letter_id):
            raise click.ClickException(f"dead letter {letter_id} does not exist")
    click.echo(f"dead letter {letter_id} queued again")
