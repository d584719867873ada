"""The dashboard's sign-in and CSRF: a flag in Flask's signed session cookie, and a per-session
random token that every POST form carries back. Failed sign-ins count towards the limit per
client address (`app.web.guesses`)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import unicodedata
from urllib.parse import unquote

from flask import Response, abort, current_app, make_response, render_template, request, session

from app.core.services import current_services
from app.web.guesses import client_address, current_guesses

SESSION_HOURS = 12
CSRF_FIELD = "csrf"
MAX_DECODINGS = 4  # a `next` still encoded after this many rounds is nothing a real link does


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
    """Open a session if `token` is ADMIN_TOKEN; a fresh session either way (no fixation).
    From an address with too many failures this minute, the request ends here with the
    sign-in page's 429 whatever the token (see `app.web.guesses` for why)."""
    guesses, address = current_guesses(), client_address()
    wait = guesses.retry_after(address)
    if wait is not None:
        abort(_too_many_guesses(wait))
    if not hmac.compare_digest(token.encode(), _admin_token().encode()):
        guesses.failed(address)
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


def _too_many_guesses(wait: int) -> Response:
    # Raised as the answer itself (flask.abort with a response), so the route stays as it is.
    target = local_path(request.values.get("next"), "/")
    page = render_template("signin.html", next=target, wrong=False, retry_after=wait)
    response = make_response(page, 429)
    response.headers["Retry-After"] = str(wait)
    return response


def local_path(target: str | None, default: str) -> str:
    r"""`target` if it is a path on this site, else `default` (no open redirects).

    Browsers drop tabs and newlines anywhere in a URL and read a backslash as '/', so "/\t/evil"
    and "/\evil" lead off the site as "//evil" does; and a proxy or a browser may decode once
    more. So `target`, and what it decodes to, must each be one '/' then neither '/' nor a
    backslash, with no backslash, whitespace or control character anywhere."""
    if not target:
        return default
    decoded = target
    for _ in range(MAX_DECODINGS):
        if not _plain_local_path(decoded):
            return default
        once_more = unquote(decoded)
        if once_more == decoded:
            return target
        decoded = once_more
    return default


def _plain_local_path(path: str) -> bool:
    if not path.startswith("/") or path[1:2] in ("/", "\\") or "\\" in path:
        return False
    return not any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in path)
