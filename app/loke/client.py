"""The LOKE API client: one retry policy, one paginator, tokens from `tokens.TokenSource`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from flask import current_app

from app.core.backoff import backoff_seconds, is_retryable_status, parse_retry_after
from app.core.services import Services
from app.loke.errors import LokeError, loke_message
from app.loke.paging import Paginator
from app.loke.tokens import MemoryTokenCache, RedisTokenCache, TokenCache, TokenSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Connection errors, timeouts, 429 and 5xx are retried this many times in all; with a
    budget, no try starts, and no wait goes, past that many seconds from the call's start."""

    attempts: int = 5
    base_seconds: float = 0.5
    cap_seconds: float = 30.0
    budget_seconds: float | None = None


# A web request (admin API, dashboard) waits on LOKE in one of gunicorn's sync workers, the
# same workers that take LOKE's webhooks: each second spent there is a second a webhook may
# wait for, and the workers' policy above can take ~80 s. So a web request tries twice within
# WEB_LOKE_BUDGET_SECONDS per call (a token fetched first counts within it; only a token
# renewed after a 401 may add one more WEB_LOKE_TIMEOUT_SECONDS: ~9 s at worst), each try
# timing out after WEB_LOKE_TIMEOUT_SECONDS, then says LOKE could not be reached. LOKE answers
# in a fraction of a second when it is well. Workers keep the full policy.
WEB_LOKE_TIMEOUT_SECONDS = 3.0
WEB_LOKE_BUDGET_SECONDS = 6.0
WEB_RETRY = RetryPolicy(
    attempts=2, base_seconds=0.5, cap_seconds=1.0, budget_seconds=WEB_LOKE_BUDGET_SECONDS
)


@dataclass(frozen=True)
class Page:
    """A page of items, its URL, and the next page's URL (None on the last page)."""

    items: list[dict[str, Any]]
    url: str
    next_url: str | None


@dataclass(frozen=True)
class UnreadPage:
    """A page answered, its next page known (from the headers), its body not parsed yet."""

    url: str
    next_url: str | None
    answer: requests.Response

    def parsed(self) -> Page:
        """The page with its body parsed (a retryable LokeError if it is not a JSON list)."""
        return Page(page_items(self.url, self.answer.content), self.url, self.next_url)


def page_items(url: str, body: bytes) -> list[Any]:
    """The items of a page's body, which must be a JSON list. Raises a retryable LokeError
    otherwise: a body cut short or garbled is worth another GET."""
    try:
        items = json.loads(body)
    except ValueError as exc:
        raise LokeError(f"LOKE GET {url}: unreadable body ({exc})") from exc
    if not isinstance(items, list):
        raise LokeError(f"LOKE GET {url}: expected a list, got {type(items).__name__}")
    return items


class LokeClient:
    """LOKE's API with one retry policy, one paginator and a token kept fresh."""

    def __init__(
        self,
        api_url: str,
        tokens: TokenSource,
        http: requests.Session,
        timeout: float = 15.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._tokens = tokens
        self._http = http
        self._timeout = timeout
        self._retry = retry

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """One call: retried when LOKE may answer later; 401 renews the token once."""
        url = path_or_url if "://" in path_or_url else f"{self.api_url}{path_or_url}"
        started = time.monotonic()
        token = self._tokens.token()
        renewed = False
        attempt = 0
        while True:
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            retry_after = None
            try:
                answer = self._http.request(
                    method, url, headers=headers, timeout=self._try_timeout(started), **kwargs
                )
            except requests.RequestException as exc:
                problem = f"LOKE unreachable ({type(exc).__name__}) for {method} {url}"
            else:
                if answer.status_code == 401 and not renewed:
                    renewed = True
                    token = self._tokens.renew(token)
                    continue
                if answer.ok:
                    return answer
                problem = f"LOKE {method} {url}: {loke_message(answer)}"
                if not is_retryable_status(answer.status_code):
                    raise LokeError(problem, answer.status_code)
                retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            attempt += 1
            if attempt >= self._retry.attempts:
                raise LokeError(f"{problem} (gave up after {attempt} attempts)")
            delay = backoff_seconds(
                attempt - 1, self._retry.base_seconds, self._retry.cap_seconds, retry_after
            )
            budget = self._retry.budget_seconds
            if budget is not None and time.monotonic() - started + delay >= budget:
                raise LokeError(f"{problem} (gave up: a retry would pass the {budget:g} s budget)")
            log.warning("%s; retrying in %.1fs", problem, delay)
            time.sleep(delay)

    def _try_timeout(self, started: float) -> float:
        """One try's timeout: the client's, or what is left of the budget if that is less."""
        if self._retry.budget_seconds is None:
            return self._timeout
        left = self._retry.budget_seconds - (time.monotonic() - started)
        return max(min(self._timeout, left), 0.001)

    def paginator(self, first_url: str, seen: tuple[str, ...] = ()) -> Paginator:
        """A paginator starting at `first_url` (`seen`: URLs it must refuse to fetch again)."""
        return Paginator(self.api_url, first_url, seen)

    def get_page(self, paginator: Paginator) -> Page:
        """The page at `paginator.current`; advances the paginator to the next one."""
        return self.get_unread_page(paginator).parsed()

    def get_unread_page(self, paginator: Paginator) -> UnreadPage:
        """`get_page` without parsing the body, for a caller that acts on the next page's URL
        first (the JSON of a thousand members takes a few milliseconds to parse)."""
        url = paginator.current
        answer = self.request("GET", url)
        return UnreadPage(url, paginator.advance(answer), answer)

    def iterate(self, path: str) -> Iterator[dict[str, Any]]:
        """Every item of a paged list, page by page (only one page is held at a time)."""
        paginator = self.paginator(path)
        while True:
            page = self.get_page(paginator)
            yield from page.items
            if page.next_url is None:
                return

    def organizations(self) -> list[dict[str, Any]]:
        """Every organization that installed the add-on."""
        return list(self.iterate("/organizations"))

    def subscriptions(self, org_id: str) -> list[dict[str, Any]]:
        """The organization's webhook subscriptions."""
        return list(self.iterate(f"/organizations/{org_id}/webhooks"))

    def put_subscription(
        self, org_id: str, ref: str, url: str, events: list[str], secret: str
    ) -> dict[str, Any]:
        """Create or replace our subscription `ref` (an upsert, safe to repeat)."""
        answer = self.request(
            "PUT",
            f"/organizations/{org_id}/webhooks/{ref}",
            json={"url": url, "events": events, "secret": secret},
        )
        return dict(answer.json())

    def delete_subscription(self, org_id: str, ref: str) -> None:
        """Delete our subscription `ref`; one already gone is fine."""
        try:
            self.request("DELETE", f"/organizations/{org_id}/webhooks/{ref}")
        except LokeError as exc:
            if not exc.not_found:  # already gone is what we wanted
                raise


def token_cache(services: Services) -> TokenCache:
    """Where the process keeps LOKE's token: Redis when there is one (shared by every
    process), else its memory. One per process, shared by its clients."""
    settings = services.settings
    if services.redis is not None and settings.loke_client_id:
        return RedisTokenCache(services.redis, settings.loke_client_id)
    return MemoryTokenCache()


def build_loke_client(services: Services, cache: TokenCache, web: bool = False) -> LokeClient:
    """A LOKE client of the process: the full retry policy, or (`web`) the one web requests
    use, within WEB_RETRY's budget."""
    settings = services.settings
    timeout = settings.loke_timeout_seconds
    if web:
        timeout = min(timeout, WEB_LOKE_TIMEOUT_SECONDS)
    tokens = TokenSource(
        services.http,
        settings.loke_auth_url,
        settings.loke_client_id,
        settings.loke_client_secret,
        timeout,
        cache,
    )
    retry = WEB_RETRY if web else RetryPolicy()
    return LokeClient(settings.loke_api_url, tokens, services.http, timeout, retry)


def current_loke_client() -> LokeClient:
    """The current process's LOKE client with the full retry policy (tasks, the CLI)."""
    client: LokeClient = current_app.extensions["loke_client"]
    return client


def web_loke_client() -> LokeClient:
    """The LOKE client of a web request: two tries within WEB_RETRY's budget."""
    client: LokeClient = current_app.extensions["web_loke_client"]
    return client
