"""POST /webhooks/loke/<orgId>: verify, store, acknowledge, enqueue. Nothing else.

The order is the guarantee: the signature is checked on the raw bytes before anything is parsed;
the body is committed before the 2xx; the task is sent only after the commit, from a background
thread so the answer never waits on Redis (and a sweeper re-sends for anything committed whose
task was lost). A transient failure answers 503, which
LOKE retries; only an event we will never accept answers 4xx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from app.core import logs
from app.core.metrics import WEBHOOKS
from app.core.services import current_services
from app.core.task_names import EVENTS_DRAIN
from app.ingest import inbox
from app.ingest.background_kicks import BackgroundKicks
from app.orgs.webhook_secrets import SigningSecrets, WebhookSecrets
from app.store.db import DatabaseUnavailable
from app.web.errors import error

log = logging.getLogger(__name__)

receiver = Blueprint("receiver", __name__)

SIGNATURE_PREFIX = "sha256="


@receiver.after_request
def _count(response: Response) -> Response:
    answer = str(response.status_code)
    if response.status_code == 202 and response.is_json:
        answer = str((response.get_json(silent=True) or {}).get("status", answer))
    WEBHOOKS.labels(inbox.event_label(g.get("event_type", "")), answer).inc()
    if "request_id" in g:
        response.headers["X-Request-Id"] = g.request_id
    return response


@receiver.post("/webhooks/loke/<id:org_id>")
def receive(org_id: str) -> tuple[Response, int]:
    """Verify, store, acknowledge, kick: the contract's answers, in that order."""
    services = current_services()
    secrets: WebhookSecrets = current_app.extensions["webhook_secrets"]
    body = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    signature = request.headers.get("X-Event-Signature", "")
    try:
        signing = secrets.get(org_id)
        if signing is not None and not _signed(signing, body, signature):
            # Another process may have rotated the secret since we cached it, and LOKE never
            # retries a 4xx: read it again (see webhook_secrets.RECHECK_AFTER_SECONDS).
            signing = secrets.recheck(org_id) or signing
            if not _signed(signing, body, signature):
                return error(401, "bad_signature", "missing or wrong X-Event-Signature")
    except SQLAlchemyError:
        log.exception("webhook for org %s: database unavailable", org_id)
        return error(503, "unavailable", "cannot store events right now; retry later")
    if signing is None:
        return error(404, "org_not_connected", f"organization {org_id} is not connected")

    problem, event_type = _check_body(org_id, body)
    g.event_type = event_type
    if problem:
        return error(400, "invalid_body", problem)

    request_id = _request_id(request.headers.get("X-Request-Id", ""))
    g.request_id = request_id
    with logs.context(org_id=org_id, event_type=event_type, request_id=request_id):
        try:
            stored = inbox.store(services.db, org_id, event_type, body, request_id)
        except DatabaseUnavailable:
            log.exception("webhook could not be stored")
            return error(503, "unavailable", "cannot store events right now; retry later")
        # DEBUG: at full speed a line per webhook would cost more than storing it. The request
        # id is stored with the event and appears in the apply and delivery lines.
        log.debug("webhook %s", stored.value)

    if stored is inbox.Stored.ACCEPTED:
        kicks: BackgroundKicks = current_app.extensions["background_kicks"]
        kicks.kick(EVENTS_DRAIN)
        if not kicks.healthy:
            # Stored, but the queue is unreachable: the sweeper will enqueue it once the queue
            # is back; 503 makes LOKE retry, and the retry is acknowledged as a duplicate.
            return error(503, "unavailable", "stored, but the queue is unavailable; retry later")
    return jsonify({"status": stored.value}), 202


def _signed(signing: SigningSecrets, body: bytes, header: str) -> bool:
    """Whether the header is the body's HMAC under one of the secrets accepted now."""
    if not header.startswith(SIGNATURE_PREFIX):
        return False
    # Bytes, not str: compare_digest refuses a str with non-ASCII characters (a TypeError,
    # that was a 500), and any header must be a plain 401.
    given = header[len(SIGNATURE_PREFIX) :].strip().lower().encode("utf-8", "replace")
    return any(
        hmac.compare_digest(hmac.new(secret, body, hashlib.sha256).hexdigest().encode(), given)
        for secret in signing.accepted()
    )


def _request_id(header: str) -> str:
    """The caller's request id if a log line, a header and the inbox's column can carry it as
    it is; else a fresh one, after what can be kept of the caller's (proxies send ids of 200
    characters and more, and one that did not fit the column lost the webhook)."""
    if 0 < len(header) <= inbox.REQUEST_ID_MAX and all(_printable(c) for c in header):
        return header
    fresh = uuid.uuid4().hex
    kept = "".join(c for c in header if _printable(c))[: inbox.REQUEST_ID_MAX - len(fresh) - 1]
    return f"{kept}-{fresh}" if kept else fresh


def _printable(character: str) -> bool:
    return "!" <= character <= "~"  # visible ASCII: no spaces, controls or other scripts


def _check_body(org_id: str, body: bytes) -> tuple[str | None, str]:
    """(problem, event type): only what we must refuse outright; field types are the worker's."""
    try:
        # UTF-8 only (json.loads would also take UTF-16/32 bytes); nesting deep enough to
        # exhaust the parser is refused like any other body that is not JSON.
        parsed = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return "the body is not JSON", ""
    if not isinstance(parsed, dict):
        return "the body is not a JSON object", ""
    event = parsed.get("event")
    if not isinstance(event, str) or not event:
        return "the body has no event name", ""
    organization = parsed.get("organization")
    body_org = organization.get("id") if isinstance(organization, dict) else None
    if body_org != org_id:
        return "organization.id does not match the URL", ""
    return None, event
