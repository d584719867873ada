"""LOKE access tokens (client credentials), cached once for every process that shares Redis.

A token is replaced a minute before `expires_in` says it ends, and at once when LOKE answers
401 to it. Without Redis each process keeps its own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Protocol

import redis
import requests

from app.loke.errors import LokeCredentialsMissing, LokeError, loke_message

REFRESH_MARGIN_SECONDS = 60.0


class TokenCache(Protocol):
    """Where the current access token is kept between calls."""

    def get(self) -> str | None:
        """The token, if one is kept and not about to expire."""

    def put(self, token: str, ttl_seconds: float) -> None:
        """Keep `token` for `ttl_seconds`."""

    def discard(self, token: str) -> None:
        """Forget `token`, if it is the one kept."""


class MemoryTokenCache:
    """This process's token only."""

    def __init__(self) -> None:
        self._token: tuple[str, float] | None = None

    def get(self) -> str | None:
        """The token, if one is kept and not about to expire."""
        if self._token and self._token[1] > time.monotonic():
            return self._token[0]
        return None

    def put(self, token: str, ttl_seconds: float) -> None:
        """Keep `token` for `ttl_seconds`."""
        self._token = (token, time.monotonic() + ttl_seconds)

    def discard(self, token: str) -> None:
        """Forget `token`, if it is the one kept."""
        if self._token and self._token[0] == token:
            self._token = None


class RedisTokenCache:
    """One token for every worker on every machine: fewer token requests, one refresh.

    Each process also keeps the token it last saw, until the expiry Redis gave it, so that a
    call to LOKE costs no round trip to Redis (a list resync calls LOKE for every page)."""

    def __init__(self, client: redis.Redis, client_id: str) -> None:
        self._redis = client
        self._key = f"loke-sync:loke-token:{client_id}"
        self._seen = MemoryTokenCache()

    def get(self) -> str | None:
        """The shared token, if one is cached and not about to expire."""
        if (token := self._seen.get()) is not None:
            return token
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(self._key)
                pipe.pttl(self._key)
                value, ttl_ms = pipe.execute()
        except redis.RedisError:
            return None  # a cache miss costs one token request, never a failure
        if not isinstance(value, bytes) or not isinstance(ttl_ms, int) or ttl_ms <= 0:
            return None
        token = value.decode()
        self._seen.put(token, ttl_ms / 1000)
        return token

    def put(self, token: str, ttl_seconds: float) -> None:
        """Share a new token for `ttl_seconds`."""
        self._seen.put(token, ttl_seconds)
        with contextlib.suppress(redis.RedisError):
            self._redis.set(self._key, token, px=max(int(ttl_seconds * 1000), 1))

    def discard(self, token: str) -> None:
        """Forget `token` everywhere, if it is still the shared one."""
        self._seen.discard(token)
        try:
            if self._redis.get(self._key) == token.encode():
                self._redis.delete(self._key)
        except redis.RedisError:
            pass


class TokenSource:
    """Access tokens by client credentials, from the issuer's token endpoint."""

    def __init__(
        self,
        http: requests.Session,
        auth_url: str,
        client_id: str | None,
        client_secret: str | None,
        timeout: float,
        cache: TokenCache,
    ) -> None:
        self._http = http
        self._auth_url = auth_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout = timeout
        self._cache = cache
        self._token_url: str | None = None
        self._lock = threading.Lock()

    def token(self) -> str:
        """A token believed valid: the cached one, else a new one."""
        return self._cache.get() or self._fetch()

    def renew(self, rejected: str) -> str:
        """LOKE refused `rejected`: drop it everywhere and get a new one."""
        self._cache.discard(rejected)
        return self._fetch()

    def _fetch(self) -> str:
        if not self._client_id or not self._client_secret:
            raise LokeCredentialsMissing(
                "LOKE_CLIENT_ID and LOKE_CLIENT_SECRET are needed to call LOKE"
            )
        with self._lock:
            try:
                answer = self._http.post(
                    self._endpoint(),
                    data={
                        "grant_type": "client_credentials",
                        "client_id": self._client_id,
                        "client_secret": self._client_secret,
                    },
                    timeout=self._timeout,
                )
            except requests.RequestException as exc:
                raise LokeError(f"LOKE token endpoint unreachable: {type(exc).__name__}") from None
            if not answer.ok:
                raise LokeError(f"LOKE refused a token: {loke_message(answer)}", answer.status_code)
            body = answer.json()
            lifetime = float(body.get("expires_in") or 3600)
            token = str(body["access_token"])
            self._cache.put(token, max(lifetime - REFRESH_MARGIN_SECONDS, lifetime / 2))
            return token

    def _endpoint(self) -> str:
        """The token URL named by OIDC discovery, else the issuer's documented `/token`."""
        if self._token_url is None:
            self._token_url = f"{self._auth_url}/token"
            try:
                discovery = self._http.get(
                    f"{self._auth_url}/.well-known/openid-configuration", timeout=self._timeout
                )
                if discovery.ok:
                    self._token_url = str(discovery.json()["token_endpoint"])
            except (requests.RequestException, ValueError, KeyError, TypeError):
                pass
        return self._token_url
