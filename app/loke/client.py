"""A LOKE API client: client-credentials token (cached, refreshed early and once on a 401),
bounded retries with jitter on connection errors, 429 and 5xx, and clear errors otherwise."""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

from app.delivery.destinations.http import parse_retry_after
from app.delivery.retry import backoff_seconds

TOKEN_REFRESH_MARGIN = 60.0  # seconds before expiry at which a token is replaced


class LokeError(RuntimeError):
    """LOKE answered with an error we cannot retry away; carries LOKE's own message."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LokeClient:
    def __init__(
        self,
        api_url: str,
        auth_url: str,
        client_id: str | None,
        client_secret: str | None,
        timeout: float = 15.0,
        attempts: int = 4,
        session: requests.Session | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._auth_url = auth_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout = timeout
        self._attempts = attempts
        self._http = session or requests.Session()
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    # -- tokens -------------------------------------------------------------------------------

    def _token_endpoint(self) -> str:
        try:
            found = self._http.get(
                f"{self._auth_url}/.well-known/openid-configuration", timeout=self._timeout
            )
            if found.ok:
                return str(found.json()["token_endpoint"])
        except (requests.RequestException, ValueError, KeyError):
            pass
        return f"{self._auth_url}/token"

    def _bearer(self, renew: bool = False) -> str:
        with self._lock:
            if not renew and self._token and self._token[1] > time.monotonic():
                return self._token[0]
            if not self._client_id or not self._client_secret:
                raise LokeError("LOKE_CLIENT_ID and LOKE_CLIENT_SECRET are needed to call LOKE")
            answer = self._http.post(
                self._token_endpoint(),
                data={
                    "grant_type": "client_credentials",
                    "client_id": self._client_id,
                    "client_secret": self._client_secret,
                },
                timeout=self._timeout,
            )
            if not answer.ok:
                raise LokeError(
                    f"LOKE token request refused: {_message(answer)}", answer.status_code
                )
            body = answer.json()
            lifetime = float(body.get("expires_in", 3600))
            expires = time.monotonic() + max(lifetime - TOKEN_REFRESH_MARGIN, lifetime / 2)
            self._token = (str(body["access_token"]), expires)
            return self._token[0]

    # -- requests -----------------------------------------------------------------------------

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """One API call with retries; returns the successful (2xx) response."""
        url = path_or_url if "://" in path_or_url else f"{self.api_url}{path_or_url}"
        renewed = False
        for attempt in range(self._attempts):
            headers = {"Authorization": f"Bearer {self._bearer()}", "Accept": "application/json"}
            try:
                answer = self._http.request(
                    method, url, headers=headers, timeout=self._timeout, **kwargs
                )
            except requests.RequestException as exc:
                if attempt + 1 == self._attempts:
                    raise LokeError(f"LOKE unreachable: {type(exc).__name__}") from None
                time.sleep(backoff_seconds(attempt, 0.5, 10))
                continue
            if answer.status_code == 401 and not renewed:
                renewed = True
                self._bearer(renew=True)
                continue
            if answer.status_code == 429 or answer.status_code >= 500:
                if attempt + 1 == self._attempts:
                    raise LokeError(f"LOKE {method} {url}: {_message(answer)}", answer.status_code)
                retry_after = parse_retry_after(answer.headers.get("Retry-After"))
                time.sleep(backoff_seconds(attempt, 0.5, 10, retry_after))
                continue
            if not answer.ok:
                raise LokeError(f"LOKE {method} {url}: {_message(answer)}", answer.status_code)
            return answer
        raise LokeError(f"LOKE {method} {url}: no answer after {self._attempts} attempts")

    def put_subscription(
        self, org_id: str, ref: str, url: str, events: list[str], secret: str
    ) -> dict[str, Any]:
        answer = self.request(
            "PUT",
            f"/organizations/{org_id}/webhooks/{ref}",
            json={"url": url, "events": events, "secret": secret},
        )
        return dict(answer.json())

    def delete_subscription(self, org_id: str, ref: str) -> None:
        try:
            self.request("DELETE", f"/organizations/{org_id}/webhooks/{ref}")
        except LokeError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise


def _message(answer: requests.Response) -> str:
    try:
        body = answer.json()
        if isinstance(body, dict) and body.get("message"):
            return f"{answer.status_code} {body['message']}"
    except ValueError:
        pass
    return f"{answer.status_code} {answer.text[:200]}"
