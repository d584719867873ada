"""LOKE's errors, carrying LOKE's own message."""

from __future__ import annotations

import requests


class LokeError(RuntimeError):
    """LOKE answered with an error we cannot retry away, or could not be reached at all."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def not_found(self) -> bool:
        """LOKE answered 404."""
        return self.status == 404

    @property
    def retryable(self) -> bool:
        """Worth trying again later: unreachable, or LOKE said 429/5xx until we gave up."""
        return self.status is None or self.status == 429 or self.status >= 500


class PagingLoop(LokeError):
    """LOKE handed back a page URL we already fetched; following it would never end."""

    @property
    def retryable(self) -> bool:
        """Never: asking again would loop again."""
        return False


class LokeCredentialsMissing(LokeError):
    """LOKE_CLIENT_ID or LOKE_CLIENT_SECRET is not set: no call to LOKE can succeed."""

    @property
    def retryable(self) -> bool:
        """Never: waiting does not set the credentials (a run fails at once, saying so)."""
        return False


def loke_message(answer: requests.Response) -> str:
    """`404 Not found (not_found)` from LOKE's `{message, code}` bodies, else the text."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        code = f" ({body['code']})" if body.get("code") else ""
        return f"{answer.status_code} {body['message']}{code}"
    return f"{answer.status_code} {answer.text[:200]}".strip()
