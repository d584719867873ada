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

from app.backfill import runs as backfill_runs
from app.core.services import current_services
from app.deadletters.listing import as_json, listing
from app.deadletters.replay import replay_now
from app.delivery import conflicts
from app.lists import report as list_report
from app.lists import runs as list_runs
from app.lists.loke_lists import current_lists_cache
from app.loke.client import web_loke_client
from app.loke.errors import LokeError
from app.orgs import connect as org_connect
from app.orgs.refusals import ConnectRefused
from app.orgs.status import status
from app.orgs.subscriptions import subscribe
from app.orgs.webhook_secrets import WebhookSecrets
from app.store.models import Organization
from app.web import dashboard_auth as auth
from app.web import dashboard_charts, dashboard_dead_letters, dashboard_search
from app.web import dashboard_format as fmt
from app.web.token_hint import admin_token_file

dashboard = Blueprint("dashboard", __name__)
for _filter in fmt.FILTERS:
    dashboard.add_app_template_filter(_filter, _filter.__name__)
dashboard_charts.register(dashboard)
dashboard_search.register(dashboard)
dashboard_dead_letters.register(dashboard)

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
    return {
        "csrf_token": auth.csrf_token,
        "signed_in": auth.signed_in,
        "admin_token_file": admin_token_file,
    }


# -- signing in and out -------------------------------------------------------------------------
@dashboard.route("/signin", methods=["GET", "POST"])
def signin() -> Response | str | tuple[str, int]:
    """The sign-in form, and signing in with ADMIN_TOKEN."""
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
    """End the session."""
    auth.sign_out()
    flash("Signed out.", "ok")
    return redirect(url_for("dashboard.signin"), 303)


# -- pages --------------------------------------------------------------------------------------
@dashboard.get("/")
def home() -> str:
    """Every organization, a row each."""
    with current_services().db.transaction() as session:
        known = session.scalars(select(Organization).order_by(Organization.id))
        statuses = [status(session, org) for org in known]
    rows = [(s, fmt.last_list_run(s["listSync"])) for s in statuses]
    running = any(_backfill_running(s) for s in statuses)
    return render_template("home.html", rows=rows, refresh=REFRESH_SECONDS if running else None)


@dashboard.get("/orgs/<id:org_id>")
def org_page(org_id: str) -> str | tuple[str, int]:
    """One organization: status, lists, recent dead letters, and its actions."""
    services = current_services()
    with services.db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None:
            return _not_found(f"Organization {org_id} is not known.")
        org_status = status(session, org)
        dead = [as_json(letter) for letter in listing(session, org_id, RECENT_DEAD_LETTERS)]
        conflicted = conflicts.listing(session, org_id, RECENT_DEAD_LETTERS)
    lists, loke_error = _lists(org_id, org_status)
    return render_template(
        "org.html",
        org=org_status,
        lists=lists,
        loke_error=loke_error,
        dead_letters=dead,
        conflicts=conflicted,
        default_list_interval=services.settings.list_sync_interval,
        refresh=REFRESH_SECONDS if _backfill_running(org_status) else None,
    )


def _backfill_running(status: dict[str, Any]) -> bool:
    return bool(status["backfill"]) and status["backfill"]["status"] == "running"


def _lists(org_id: str, status: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The organization's LOKE lists as last read (a minute old at most while LOKE answers:
    the page's refresh never waits on LOKE), and why LOKE could not be read if it could not."""
    if not status["connected"]:
        return [], None
    known = current_lists_cache().get(web_loke_client(), org_id)
    try:
        found = list_report.overview(current_services(), known, org_id)
    except LokeError as exc:
        return _known_lists(status), str(exc)
    if found.loke_error and found.read_at:
        return (
            found.lists,
            f"{found.loke_error} (the lists below are as read at {found.read_at:%H:%M:%S} UTC)",
        )
    return found.lists, found.loke_error


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
    """PUT our webhook subscription at LOKE again."""
    if subscribe(current_services(), web_loke_client(), org_id):
        flash("Subscription sent to LOKE again: ok.", "ok")
    elif not _connected(org_id):
        flash(f"Organization {org_id} is not connected.", "error")
    else:
        flash("LOKE refused the subscription; the error is shown below.", "error")
    return _back_to_org(org_id)


@dashboard.post("/orgs/<id:org_id>/backfill")
def start_backfill(org_id: str) -> Response:
    """Start a backfill, or resume the last one if it failed."""
    try:
        started = backfill_runs.start(current_services(), org_id)
    except backfill_runs.NotConnected:
        flash(f"Organization {org_id} is not connected.", "error")
        return _back_to_org(org_id)
    if started.started:
        flash(f"Backfill {started.run_id} started.", "ok")
    else:
        flash(f"Backfill {started.run_id} is already running.", "error")
    return _back_to_org(org_id)


@dashboard.post("/orgs/<id:org_id>/conflicts/retry")
def retry_conflicts(org_id: str) -> Response:
    """Send every conflicted customer again."""
    if not _connected(org_id):
        flash(f"Organization {org_id} is not connected.", "error")
        return _back_to_org(org_id)
    flash(f"{conflicts.retry(current_services(), org_id)} customers sent again.", "ok")
    return _back_to_org(org_id)


@dashboard.post("/orgs/<id:org_id>/lists/sync")
def sync_lists(org_id: str) -> Response:
    """Resync the organization's chosen lists now."""
    if not _connected(org_id):
        flash(f"Organization {org_id} is not connected.", "error")
        return _back_to_org(org_id)
    started = list_runs.start_chosen(current_services(), org_id)
    if not started:
        flash("No lists are chosen for syncing.", "error")
    else:
        new = sum(1 for s in started if s.started)
        flash(f"List sync: {new} started, {len(started) - new} already running.", "ok")
    return _back_to_org(org_id)


@dashboard.post("/orgs/<id:org_id>/lists/<id:list_id>/choice")
def choose_list(org_id: str, list_id: str) -> Response:
    """Opt a list in or out: the `lists` field of PUT /api/orgs/<orgId>, through `orgs.connect`."""
    services = current_services()
    with services.db.transaction() as session:
        org = session.get(Organization, org_id)
        chosen = set(org.lists) if org is not None and org.connected else None
    if chosen is None:  # connect() would connect it anew, which a list toggle must never do
        flash(f"Organization {org_id} is not connected.", "error")
        return _back_to_org(org_id)
    wanted = request.form.get("synced") == "on"
    chosen = chosen | {list_id} if wanted else chosen - {list_id}
    try:
        org_connect.connect(services, web_loke_client(), org_id, {"lists": sorted(chosen)})
    except ConnectRefused as exc:  # disconnected meanwhile: the connect would be a new one
        flash(str(exc), "error")
        return _back_to_org(org_id)
    secrets: WebhookSecrets = current_app.extensions["webhook_secrets"]
    secrets.forget(org_id)
    flash(f"List {list_id} is {'now' if wanted else 'no longer'} synced.", "ok")
    return _back_to_org(org_id)


@dashboard.post("/dead-letters/<int:letter_id>/replay")
def replay(letter_id: int) -> Response:
    """Put a dead letter's work back in line."""
    back = auth.local_path(request.form.get("next"), url_for("dashboard.dead_letters_page"))
    if replay_now(current_services(), letter_id):
        flash(f"Dead letter {letter_id} is being replayed.", "ok")
    else:
        flash(f"Dead letter {letter_id} does not exist.", "error")
    return redirect(back, 303)


def _connected(org_id: str) -> bool:
    with current_services().db.transaction() as session:
        org = session.get(Organization, org_id)
        return org is not None and org.connected
