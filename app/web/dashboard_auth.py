"""The dashboard's sign-in and CSRF: a flag in Flask's signed session cookie, and a per-session
random token that every POST form carries back."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from flask import current_app, request, session

from app.core.services import current_services

SESSION_HOURS = 12
CSRF_FIELD = "csrf"


def _admin_token() -> str:
    return current_services().settings.required_admin_token


def _token_mark(token: str) -> str:
    """Ties a session to the ADMIN_TOKEN it was opened with: rotating the token signs everyone
    out. Keyed with the session key, so the readable cookie says nothing about the token."""
    key = current_app.secret_key
    if not isinstance(key, bytes):
        raise RuntimeError("the app's session key is not set")
    return hmac.new(key, b"admin token:" + token.encode(), hashlib.sha256).hexdigest()[:32]


def sign_in(token: str) -> bool:
    """Open a session if `token` is ADMIN_TOKEN; a fresh session either way (no fixation)."""
    if not hmac.compare_digest(token.encode(), _admin_token().encode()):
        return False
    session.clear()
    session["admin"] = _token_mark(_admin_token())
    session["since"] = int(time.time())
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return True


def sign_out() -> None:
    """End the session."""
    session.clear()


def signed_in() -> bool:
    """Whether the session was opened with today's ADMIN_TOKEN, less than SESSION_HOURS ago."""
    mark, since = session.get("admin"), session.get("since")
    if not isinstance(mark, str) or not isinstance(since, int):
        return False
    if time.time() - since > SESSION_HOURS * 3600:
        return False
    return hmac.compare_digest(mark, _token_mark(_admin_token()))


def csrf_token() -> str:
    """The session's CSRF token, made on first use (the sign-in form needs one too)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def csrf_ok() -> bool:
    """Whether the form carries the session's CSRF token."""
    expected = session.get(CSRF_FIELD)
    sent = request.form.get(CSRF_FIELD, "")
    return isinstance(expected, str) and hmac.compare_digest(sent.encode(), expected.encode())


def local_path(target: str | None, default: str) -> str:
    """`target` if it is a path on this site, else `default` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
