"""The admin API under /api: bearer ADMIN_TOKEN, JSON in and out, thin over app functions."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select

from app import backfill, customers, deadletters, lists, loke_client, orgs, services
from app.loke.errors import LokeError
from app.models import BackfillRun, Organization
from app.web.errors import error
from app.webhook_secrets import WebhookSecrets

admin = Blueprint("admin", __name__, url_prefix="/api")


@admin.before_request
def _require_token() -> tuple[Response, int] | None:
    header = request.headers.get("Authorization", "")
    token = services().settings.required_admin_token
    if not header.startswith("Bearer ") or not hmac.compare_digest(
        header[len("Bearer ") :].encode(), token.encode()
    ):
        return error(401, "unauthorized", "a valid Authorization: Bearer ADMIN_TOKEN is required")
    return None


@admin.get("/orgs")
def list_orgs() -> Response:
    with services().db.transaction() as session:
        found = session.scalars(select(Organization).order_by(Organization.id))
        return jsonify({"orgs": [orgs.status(session, org) for org in found]})


@admin.put("/orgs/<id:org_id>")
def put_org(org_id: str) -> tuple[Response, int]:
    found = services()
    created = orgs.connect(found, loke_client(), org_id, request.get_json(silent=True))
    secrets: WebhookSecrets = current_app.extensions["webhook_secrets"]
    secrets.forget(org_id)
    with found.db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None:  # purged by a concurrent DELETE
            return error(404, "not_found", f"organization {org_id} was deleted meanwhile")
        return jsonify(orgs.status(session, org)), 201 if created else 200


@admin.get("/orgs/<id:org_id>")
def get_org(org_id: str) -> tuple[Response, int]:
    with services().db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None:
            return error(404, "not_found", f"organization {org_id} is not known")
        return jsonify(orgs.status(session, org)), 200


@admin.delete("/orgs/<id:org_id>")
def delete_org(org_id: str) -> tuple[Response, int]:
    purge = request.args.get("purge", "").lower() in {"1", "true", "yes"}
    try:
        found = orgs.disconnect(services(), loke_client(), org_id, purge)
    except LokeError as exc:
        return error(502, "loke_error", f"disconnected here, but LOKE refused: {exc}")
    finally:
        current_app.extensions["webhook_secrets"].forget(org_id)
    if not found:
        return error(404, "not_found", f"organization {org_id} is not known")
    return jsonify({"status": "disconnected", "purged": purge}), 200


@admin.post("/orgs/<id:org_id>/subscription")
def reset_subscription(org_id: str) -> tuple[Response, int]:
    found = services()
    ok = orgs.subscribe(found, loke_client(), org_id)
    with found.db.transaction() as session:
        org = session.get(Organization, org_id)
        if org is None or not org.connected:
            return error(404, "not_found", f"organization {org_id} is not connected")
        return jsonify(orgs.status(session, org)["subscription"]), 200 if ok else 502


@admin.post("/orgs/<id:org_id>/backfill")
def start_backfill(org_id: str) -> tuple[Response, int]:
    found = services()
    try:
        started = backfill.start(found, org_id)
    except backfill.NotConnected:
        return error(404, "not_found", f"organization {org_id} is not connected")
    with found.db.transaction() as session:
        run = backfill.progress(session.get(BackfillRun, started.run_id))
    if not started.started:
        return error(409, "backfill_running", f"backfill {started.run_id} is already running")
    return jsonify({"backfill": run}), 202


@admin.get("/orgs/<id:org_id>/lists")
def get_lists(org_id: str) -> tuple[Response, int]:
    if not _connected(org_id):
        return error(404, "not_found", f"organization {org_id} is not connected")
    try:
        found = lists.overview(services(), loke_client(), org_id)
    except LokeError as exc:
        return error(502, "loke_error", str(exc))
    return jsonify({"lists": found}), 200


@admin.post("/orgs/<id:org_id>/lists/sync")
def sync_lists(org_id: str) -> tuple[Response, int]:
    if not _connected(org_id):
        return error(404, "not_found", f"organization {org_id} is not connected")
    started = lists.start_chosen(services(), org_id)
    runs = [{"listId": s.list_id, "runId": s.run_id, "started": s.started} for s in started]
    return jsonify({"runs": runs}), 202


def _connected(org_id: str) -> bool:
    with services().db.transaction() as session:
        org = session.get(Organization, org_id)
        return org is not None and org.connected


@admin.get("/orgs/<id:org_id>/customers/<id:customer_id>")
def get_customer(org_id: str, customer_id: str) -> tuple[Response, int]:
    with services().db.transaction() as session:
        found = customers.view(session, org_id, customer_id)
    if found is None:
        return error(404, "not_found", f"customer {customer_id} of {org_id} is not stored")
    return jsonify(found), 200


@admin.get("/dead-letters")
def list_dead_letters() -> Response:
    org_id = request.args.get("orgId")
    limit = min(request.args.get("limit", 100, type=int) or 100, 1000)
    with services().db.transaction() as session:
        letters = deadletters.listing(session, org_id, limit)
        return jsonify({"deadLetters": [deadletters.as_json(d) for d in letters]})


@admin.post("/dead-letters/<int:letter_id>/replay")
def replay_dead_letter(letter_id: int) -> tuple[Response, int]:
    if not deadletters.replay_now(services(), letter_id):
        return error(404, "not_found", f"dead letter {letter_id} does not exist")
    return jsonify({"status": "replaying", "id": letter_id}), 202
