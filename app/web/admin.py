"""The admin API under /api: bearer ADMIN_TOKEN, JSON in and out, thin over app functions."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import ValidationError
from sqlalchemy import select

from app.backfill import runs as backfill_runs
from app.core.services import current_services
from app.core.timestamps import to_iso
from app.core.validation import summary
from app.deadletters.listing import STATES, as_json, listing
from app.deadletters.replay import ReplayFilter, replay_matching, replay_now
from app.delivery import conflicts
from app.lists import report as list_report
from app.lists import runs as list_runs
from app.lists.loke_lists import current_lists_cache
from app.loke.client import web_loke_client
from app.loke.errors import LokeError
from app.mirror import view as customer_view
from app.orgs import connect as org_connect
from app.orgs import secret_rotation
from app.orgs.refusals import ConnectRefused
from app.orgs.status import status
from app.orgs.subscriptions import subscribe
from app.orgs.webhook_secrets import WebhookSecrets
from app.store.models import BackfillRun, Organization
from app.web import paging
from app.web.errors import error
from app.web.guesses import client_address, current_guesses

admin = Blueprint("admin", __name__, url_prefix="/api")


@admin.before_request
def _require_token() -> tuple[Response, int] | None:
    header = request.headers.get("Authorization")
    refusal = "a valid Authorization: Bearer ADMIN_TOKEN is required"
    if header is None:  # no credential at all: refused, but no guess to count
        return error(401, "unauthorized", refusal)
    # Failed tokens are limited per address, and a limited address is refused whatever it
    # sends (see app.web.guesses for why).
    guesses, address = current_guesses(), client_address()
    wait = guesses.retry_after(address)
    if wait is not None:
        answer = error(429, "too_many_attempts", f"too many wrong tokens: retry in {wait} s")
        answer[0].headers["Retry-After"] = str(wait)
        return answer
    token = current_services().settings.required_admin_token
    if not header.startswith("Bearer ") or not hmac.compare_digest(
        header[len("Bearer ") :].encode(), token.encode()
    ):
        guesses.failed(address)
        return error(401, "unauthorized", refusal)
    return None


@admin.get("/orgs")
def list_orgs() -> Response:
    """Every organization known, with its status."""
    with current_services().db.transaction() as session:
        known = session.scalars(select(Organization).order_by(Organization.id))
        return jsonify({"orgs": [status(session, org) for org in known]})


@admin.put("/orgs/<id:org_id>")
def put_org(org_id: str) -> tuple[Response, int]:
    """Connect an organization (201), or change its settings (200). A connect LOKE refuses
    leaves nothing behind: 400 `loke_not_configured` (no LOKE client credentials), 409
    `loke_refused` (LOKE said no: credentials, or the organization), 503 `loke_unavailable`."""
    services = current_services()
    try:
        created = org_connect.connect(services, web_loke_client(), org_id, _json_body())
    except ConnectRefused as exc:
        return error(exc.http_status, exc.code, str(exc))
    finally:
        _forget_secret(org_id)
    with services.db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None:  # purged by a concurrent DELETE
            return error(404, "not_found", f"organization {org_id} was deleted meanwhile")
        return jsonify(status(session, org)), 201 if created else 200


@admin.get("/orgs/<id:org_id>")
def get_org(org_id: str) -> tuple[Response, int]:
    """One organization's status."""
    with current_services().db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None:
            return error(404, "not_found", f"organization {org_id} is not known")
        return jsonify(status(session, org)), 200


@admin.delete("/orgs/<id:org_id>")
def delete_org(org_id: str) -> tuple[Response, int]:
    """Disconnect an organization (`?purge=true`: and delete what is stored of it)."""
    purge = request.args.get("purge", "").lower() in {"1", "true", "yes"}
    try:
        done = org_connect.disconnect(current_services(), web_loke_client(), org_id, purge)
    finally:
        _forget_secret(org_id)
        current_lists_cache().forget(org_id)
    if done is None:
        return error(404, "not_found", f"organization {org_id} is not known")
    # Disconnected (and purged) here even when LOKE refused: the refusal is reported, not fatal.
    answer = {"status": "disconnected", "purged": purge, "unsubscribed": done.unsubscribed,
              "unsubscribeError": done.loke_error}  # fmt: skip
    return jsonify(answer), 200


@admin.post("/orgs/<id:org_id>/subscription")
def reset_subscription(org_id: str) -> tuple[Response, int]:
    """PUT our webhook subscription at LOKE again (502 when LOKE refuses)."""
    services = current_services()
    ok = subscribe(services, web_loke_client(), org_id)
    with services.db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None or not org.connected:
            return error(404, "not_found", f"organization {org_id} is not connected")
        return jsonify(status(session, org)["subscription"]), 200 if ok else 502


@admin.post("/orgs/<id:org_id>/backfill")
def start_backfill(org_id: str) -> tuple[Response, int]:
    """Start a backfill, or resume the last one if it failed (409 while one runs)."""
    services = current_services()
    try:
        started = backfill_runs.start(services, org_id)
    except backfill_runs.NotConnected:
        return error(404, "not_found", f"organization {org_id} is not connected")
    with services.db.transaction() as session:
        run = backfill_runs.progress(session.get(BackfillRun, started.run_id))
    if not started.started:
        return error(409, "backfill_running", f"backfill {started.run_id} is already running")
    return jsonify({"backfill": run}), 202


@admin.get("/orgs/<id:org_id>/lists")
def get_lists(org_id: str) -> tuple[Response, int]:
    """Every LOKE list of the organization, with whether it is synced and how it went (read
    from LOKE at most once a minute; `lokeError`: LOKE could not be read just now, and the
    lists are those read at `listsReadAt`)."""
    if not _connected(org_id):
        return error(404, "not_found", f"organization {org_id} is not connected")
    known = current_lists_cache().get(web_loke_client(), org_id)
    try:
        found = list_report.overview(current_services(), known, org_id)
    except LokeError as exc:
        return error(502, "loke_error", str(exc))
    read_at = found.read_at.isoformat() if found.read_at else None
    answer = {"lists": found.lists, "listsReadAt": read_at, "lokeError": found.loke_error}
    return jsonify(answer), 200


@admin.post("/orgs/<id:org_id>/lists/sync")
def sync_lists(org_id: str) -> tuple[Response, int]:
    """Resync the organization's chosen lists now."""
    if not _connected(org_id):
        return error(404, "not_found", f"organization {org_id} is not connected")
    started = list_runs.start_chosen(current_services(), org_id)
    runs = [{"listId": s.list_id, "runId": s.run_id, "started": s.started} for s in started]
    return jsonify({"runs": runs}), 202


@admin.get("/orgs/<id:org_id>/customers/<id:customer_id>")
def get_customer(org_id: str, customer_id: str) -> tuple[Response, int]:
    """The stored view of one customer."""
    with current_services().db.transaction() as session:
        customer = customer_view.view(session, org_id, customer_id)
    if customer is None:
        return error(404, "not_found", f"customer {customer_id} of {org_id} is not stored")
    return jsonify(customer), 200


@admin.get("/orgs/<id:org_id>/conflicts")
def get_conflicts(org_id: str) -> tuple[Response, int]:
    """Customers the CRM holds without their email, and why (`?limit=` 1-1000, `?offset=`)."""
    try:
        limit, offset = paging.limit_and_offset(request.args)
    except paging.InvalidPaging as exc:
        return error(400, "invalid_request", str(exc))
    with current_services().db.transaction() as session:
        if session.get(Organization, org_id) is None:
            return error(404, "not_found", f"organization {org_id} is not known")
        return jsonify({"conflicts": conflicts.listing(session, org_id, limit, offset)}), 200


@admin.post("/orgs/<id:org_id>/conflicts/retry")
def retry_conflicts(org_id: str) -> tuple[Response, int]:
    """Send every conflicted customer again (after fixing the cause in the CRM)."""
    if not _connected(org_id):
        return error(404, "not_found", f"organization {org_id} is not connected")
    return jsonify({"retried": conflicts.retry(current_services(), org_id)}), 202


@admin.get("/dead-letters")
def list_dead_letters() -> Response | tuple[Response, int]:
    """The newest dead letters (`?orgId=` of one organization, `?reason=` a part of it in any
    case, `?state=` waiting or replayed, `?limit=` 1-1000, `?offset=`): what the dashboard's
    filters show, and what `POST /dead-letters/replay` with the same filter replays."""
    org_id = request.args.get("orgId")
    state = request.args.get("state", "")
    try:
        limit, offset = paging.limit_and_offset(request.args)
        reason = ReplayFilter(reason=(request.args.get("reason") or "").strip() or None).reason
        if state not in STATES:
            raise paging.InvalidPaging("state must be waiting, replayed or empty")
    except ValidationError as exc:
        return error(400, "invalid_request", summary(exc))
    except paging.InvalidPaging as exc:
        return error(400, "invalid_request", str(exc))
    if org_id is not None and paging.names_nothing_stored(org_id):
        return jsonify({"deadLetters": []})
    with current_services().db.transaction() as session:
        letters = listing(session, org_id, limit, offset, reason, STATES[state])
        return jsonify({"deadLetters": [as_json(letter) for letter in letters]})


@admin.post("/dead-letters/replay")
def replay_dead_letters() -> tuple[Response, int]:
    """Replay every dead letter not replayed yet (`orgId`: of one organization; `reason`: whose
    reason contains it)."""
    body = _json_body() if request.get_data(cache=True).strip() else {}
    if not isinstance(body, dict):
        return error(400, "invalid_request", "the body must be a JSON object")
    count = replay_matching(current_services(), ReplayFilter.model_validate(body))
    return jsonify({"status": "replaying", "replayed": count}), 202


@admin.post("/dead-letters/<int:letter_id>/replay")
def replay_dead_letter(letter_id: int) -> tuple[Response, int]:
    """Put a dead letter's work back in line."""
    if not replay_now(current_services(), letter_id):
        return error(404, "not_found", f"dead letter {letter_id} does not exist")
    return jsonify({"status": "replaying", "id": letter_id}), 202


@admin.post("/orgs/<id:org_id>/webhook-secret/rotate")
def rotate_webhook_secret(org_id: str) -> tuple[Response, int]:
    """A new webhook secret, put at LOKE; the old one is accepted until `previousValidUntil`
    (502 when LOKE refuses: the old secret stays the current one)."""
    try:
        until = secret_rotation.rotate(current_services(), web_loke_client(), org_id)
    except secret_rotation.NotConnected:
        return error(404, "not_found", f"organization {org_id} is not connected")
    except secret_rotation.RotationRefused as exc:
        return error(502, "loke_error", f"not rotated: LOKE refused the new secret: {exc}")
    finally:
        _forget_secret(org_id)
    return jsonify({"rotated": True, "previousValidUntil": to_iso(until)}), 200


def _json_body() -> object:
    """The body parsed as JSON whatever its Content-Type says (`curl -d` sends a form's unless
    told otherwise, and the body is JSON all the same), or None when it is not JSON."""
    return request.get_json(force=True, silent=True)


def _connected(org_id: str) -> bool:
    with current_services().db.transaction() as session:
        org = session.get(Organization, org_id)
        return org is not None and org.connected


def _forget_secret(org_id: str) -> None:
    """A connect or disconnect changes the webhook secret: this process must not cache it."""
    secrets: WebhookSecrets = current_app.extensions["webhook_secrets"]
    secrets.forget(org_id)
