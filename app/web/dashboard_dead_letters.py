"""The dashboard's dead letters: filtered by organization, reason and state, paged and counted,
with a bulk replay of the waiting ones the filter shows (the admin API's `ReplayFilter`)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from sqlalchemy import select
from werkzeug.wrappers import Response

from app.core.services import current_services
from app.core.validation import summary
from app.deadletters import listing as letters
from app.deadletters.replay import ReplayFilter, replay_matching
from app.store.models import Organization
from app.web import dashboard_auth as auth
from app.web import paging

PAGE_SIZE = 50
STATES = letters.STATES


def register(blueprint: Blueprint) -> None:
    """Add the dead-letter routes to the dashboard's blueprint (its sign-in and CSRF guard,
    headers and endpoint names: `dashboard.dead_letters_page`, `dashboard.replay_all`)."""
    blueprint.add_url_rule("/dead-letters", view_func=dead_letters_page, methods=["GET"])
    blueprint.add_url_rule("/dead-letters/replay", view_func=replay_all, methods=["POST"])


def dead_letters_page() -> str | tuple[str, int]:
    """Dead letters, newest first: `?org=`, `?reason=` (a part of it, any case), `?state=`
    (waiting or replayed), `?offset=`; with their counts and the bulk replay form."""
    state = request.args.get("state", "")
    try:
        which = _filter(request.args.get("org"), request.args.get("reason"))
        limit, offset = paging.limit_and_offset(request.args, PAGE_SIZE)
        if state not in STATES:
            raise paging.InvalidPaging("state must be waiting, replayed or empty")
    except (ValidationError, paging.InvalidPaging) as exc:
        problem = summary(exc) if isinstance(exc, ValidationError) else str(exc)
        return _page(ReplayFilter(), "", [], 0, 0, (PAGE_SIZE, 0), problem), 400
    waiting = STATES[state]
    with current_services().db.transaction() as session:
        shown = letters.count(session, which.org_id, which.reason, waiting)
        waiting_count = letters.count(session, which.org_id, which.reason, True)
        found = letters.listing(session, which.org_id, limit, offset, which.reason, waiting)
        rows = [letters.as_json(letter) for letter in found]
    return _page(which, state, rows, shown, waiting_count, (limit, offset))


def replay_all() -> Response:
    """Replay every waiting dead letter the form's filter takes (`org`, `reason`), then go back
    to the page it was sent from (`next`), or to the organization's dead letters."""
    org_id = request.form.get("org") or None
    try:
        which = _filter(org_id, request.form.get("reason"))
    except ValidationError as exc:
        flash(f"Nothing replayed: {summary(exc)}.", "error")
        return redirect(url_for("dashboard.dead_letters_page"), 303)
    count = replay_matching(current_services(), which)
    flash(f"{count} dead letters are being replayed.", "ok")
    back = url_for("dashboard.dead_letters_page", org=org_id)
    return redirect(auth.local_path(request.form.get("next"), back), 303)


def _filter(org_id: str | None, reason: str | None) -> ReplayFilter:
    """The filter as a bulk replay reads it: an empty field filters nothing."""
    return ReplayFilter(org_id=org_id or None, reason=(reason or "").strip() or None)


def _page(
    which: ReplayFilter,
    state: str,
    rows: list[dict[str, Any]],
    shown: int,
    waiting: int,
    window: tuple[int, int],
    problem: str | None = None,
) -> str:
    limit, offset = window
    wanted = {"org": which.org_id, "reason": which.reason, "state": state or None}
    if limit != PAGE_SIZE:
        wanted["limit"] = str(limit)
    earlier = max(offset - limit, 0) if offset else None
    later = offset + limit if offset + limit < shown else None
    with current_services().db.transaction() as session:
        known = select(Organization.id, Organization.name).order_by(Organization.id)
        orgs = [{"id": row.id, "name": row.name} for row in session.execute(known)]
    if which.org_id and all(org["id"] != which.org_id for org in orgs):
        orgs.append({"id": which.org_id, "name": None})  # an id from the URL stays shown
    return render_template(
        "dead_letters.html",
        dead_letters=rows,
        org_id=which.org_id,
        reason=which.reason or "",
        state=state,
        orgs=orgs,
        shown=shown,
        waiting=waiting,
        first=offset + 1 if rows else 0,
        last=offset + len(rows),
        previous_url=None if earlier is None else _url(wanted, earlier),
        next_url=None if later is None else _url(wanted, later),
        here=request.full_path.rstrip("?"),
        problem=problem,
    )


def _url(wanted: dict[str, str | None], offset: int) -> str:
    args: dict[str, Any] = {k: v for k, v in wanted.items() if v}
    if offset:
        args["offset"] = offset
    return url_for("dashboard.dead_letters_page", **args)
