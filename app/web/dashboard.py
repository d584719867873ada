"""The dashboard at /: server-rendered pages over the same app functions as the admin API.

Signed in with ADMIN_TOKEN (a flag in Flask's signed session cookie); every action is a POST
form carrying the session's CSRF token, answered with a redirect back and a flash message.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from werkzeug.wrappers import Response

from app import backfill, deadletters, lists, loke_client, orgs, services
from app.loke.errors import LokeError
from app.models import Organization
from app.web import dashboard_auth as auth
from app.web import dashboard_format as fmt
from app.webhook_secrets import WebhookSecrets

dashboard = Blueprint("dashboard", __name__)
for _filter in fmt.FILTERS:
    dashboard.add_app_template_filter(_filter, _filter.__name__)

PUBLIC = {"dashboard.signin"}
REFRESH_SECONDS = 5
RECENT_DEAD_LETTERS = 20
# The pages hold no script at all; styles come only from our own stylesheet.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@dashboard.before_request
def _guard() -> Response | tuple[str, int] | None:
    if request.endpoint not in PUBLIC and not auth.signed_in():
        wanted = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("dashboard.signin", next=wanted), 303)
    if request.method == "POST" and not auth.csrf_ok():
        message = "This form has expired or did not come from this dashboard. Reload and retry."
        return render_template("problem.html", title="Refused", message=message), 400
    return None


@dashboard.after_request
def _headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@dashboard.context_processor
def _template_globals() -> dict[str, Any]:
    return {"csrf_token": auth.csrf_token, "signed_in": auth.signed_in}


# -- signing in and out -------------------------------------------------------------------------
@dashboard.route("/signin", methods=["GET", "POST"])
def signin() -> Response | str | tuple[str, int]:
    target = auth.local_path(request.values.get("next"), url_for("dashboard.home"))
    if request.method == "POST":
        if auth.sign_in(request.form.get("token", "")):
            return redirect(target, 303)
        return render_template("signin.html", next=target, wrong=True), 401
    if auth.signed_in():
        return redirect(target, 303)
    return render_template("signin.html", next=target, wrong=False)


@dashboard.post("/signout")
def signout() -> Response:
    auth.sign_out()
    flash("Signed out.", "ok")
    return redirect(url_for("dashboard.signin"), 303)


# -- pages --------------------------------------------------------------------------------------
@dashboard.get("/")
def home() -> str:
    with services().db.transaction() as session:
        found = session.scalars(select(Organization).order_by(Organization.id))
        statuses = [orgs.status(session, org) for org in found]
    rows = [(s, fmt.last_list_run(s["listSync"])) for s in statuses]
    running = any(_backfill_running(s) for s in statuses)
    return render_template("home.html", rows=rows, refresh=REFRESH_SECONDS if running else None)


@dashboard.get("/orgs/<id:org_id>")
def org_page(org_id: str) -> str | tuple[str, int]:
    found = services()
    with found.db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None:
            return _not_found(f"Organization {org_id} is not known.")
        status = orgs.status(session, org)
        letters = deadletters.listing(session, org_id, RECENT_DEAD_LETTERS)
        dead = [deadletters.as_json(letter) for letter in letters]
    loke_error = None
    try:
        found_lists = lists.overview(found, loke_client(), org_id) if status["connected"] else []
    except LokeError as exc:
        loke_error = str(exc)
        found_lists = _known_lists(status)
    return render_template(
        "org.html",
        org=status,
        lists=found_lists,
        loke_error=loke_error,
        dead_letters=dead,
        default_list_interval=found.settings.list_sync_interval,
        refresh=REFRESH_SECONDS if _backfill_running(status) else None,
    )


@dashboard.get("/dead-letters")
def dead_letters_page() -> str:
    org_id = request.args.get("org") or None
    with services().db.transaction() as session:
        letters = deadletters.listing(session, org_id, 200)
        dead = [deadletters.as_json(letter) for letter in letters]
    return render_template("dead_letters.html", dead_letters=dead, org_id=org_id)


def _backfill_running(status: dict[str, Any]) -> bool:
    return bool(status["backfill"]) and status["backfill"]["status"] == "running"


def _known_lists(status: dict[str, Any]) -> list[dict[str, Any]]:
    """When LOKE cannot be asked: the lists we have synced, as far as we know them."""
    chosen = set(status["lists"])
    known = {s["id"]: {**s, "synced": s["id"] in chosen} for s in status["listSync"]}
    for list_id in chosen - known.keys():
        known[list_id] = {"id": list_id, "name": None, "synced": True}
    return sorted(known.values(), key=lambda item: item["id"])


def _not_found(message: str) -> tuple[str, int]:
    return render_template("problem.html", title="Not found", message=message), 404


# -- actions: the admin API's, through the same app functions -----------------------------------
def _back_to_org(org_id: str) -> Response:
    return redirect(url_for("dashboard.org_page", org_id=org_id), 303)


@dashboard.post("/orgs/<id:org_id>/subscription")
def reset_subscription(org_id: str) -> Response:
    if orgs.subscribe(services(), loke_client(), org_id):
        flash("Subscription sent to LOKE again: ok.", "ok")
    elif not _connected(org_id):
        flash(f"Organization {org_id} is not connected.", "error")
    else:
        flash("LOKE refused the subscription; the error is shown below.", "error")
    return _back_to_org(org_id)


@dashboard.post("/orgs/<id:org_id>/backfill")
def start_backfill(org_id: str) -> Response:
    try:
        started = backfill.start(services(), org_id)
    except backfill.NotConnected:
        flash(f"Organization {org_id} is not connected.", "error")
        return _back_to_org(org_id)
    if started.started:
        flash(f"Backfill {started.run_id} started.", "ok")
    else:
        flash(f"Backfill {started.run_id} is already running.", "error")
    return _back_to_org(org_id)


@dashboard.post("/orgs/<id:org_id>/lists/sync")
def sync_lists(org_id: str) -> Response:
    if not _connected(org_id):
        flash(f"Organization {org_id} is not connected.", "error")
        return _back_to_org(org_id)
    started = lists.start_chosen(services(), org_id)
    if not started:
        flash("No lists are chosen for syncing.", "error")
    else:
        new = sum(1 for s in started if s.started)
        flash(f"List sync: {new} started, {len(started) - new} already running.", "ok")
    return _back_to_org(org_id)


@dashboard.post("/orgs/<id:org_id>/lists/<id:list_id>/choice")
def choose_list(org_id: str, list_id: str) -> Response:
    """Opt a list in or out: the `lists` field of PUT /api/orgs/<orgId>, through orgs.connect."""
    found = services()
    with found.db.transaction() as session:
        org = session.get(Organization, org_id)
        chosen = set(org.lists) if org is not None and org.connected else None
    if chosen is None:  # connect() would connect it anew, which a list toggle must never do
        flash(f"Organization {org_id} is not connected.", "error")
        return _back_to_org(org_id)
    wanted = request.form.get("synced") == "on"
    chosen = chosen | {list_id} if wanted else chosen - {list_id}
    orgs.connect(found, loke_client(), org_id, {"lists": sorted(chosen)})
    secrets: WebhookSecrets = current_app.extensions["webhook_secrets"]
    secrets.forget(org_id)
    flash(f"List {list_id} is {'now' if wanted else 'no longer'} synced.", "ok")
    return _back_to_org(org_id)


@dashboard.post("/dead-letters/<int:letter_id>/replay")
def replay(letter_id: int) -> Response:
    back = auth.local_path(request.form.get("next"), url_for("dashboard.dead_letters_page"))
    if deadletters.replay_now(services(), letter_id):
        flash(f"Dead letter {letter_id} is being replayed.", "ok")
    else:
        flash(f"Dead letter {letter_id} does not exist.", "error")
    return redirect(back, 303)


def _connected(org_id: str) -> bool:
    with services().db.transaction() as session:
        org = session.get(Organization, org_id)
        return org is not None and org.connected
