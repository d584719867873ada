"""LOKE paging: the `X-Next-Page` header is the only signal, and its value is the next URL."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urljoin

import requests

from app.loke.errors import PagingLoop


class Paginator:
    """Follows `X-Next-Page` (a full URL or a path relative to the API base) and refuses to
    loop: a page URL seen before means LOKE is repeating itself, and we stop with an error
    rather than fetch forever."""

    def __init__(self, api_url: str, first_url: str, seen: Iterable[str] = ()) -> None:
        self._base = api_url.rstrip("/") + "/"
        self.current = self.resolve(first_url)
        self._seen = {self.resolve(u) for u in seen} | {self.current}

    def resolve(self, url: str) -> str:
        """A page URL made absolute against the API base."""
        return urljoin(self._base, url.lstrip("/")) if "://" not in url else url

    def advance(self, answer: requests.Response) -> str | None:
        """The next page's URL from this answer, or None on the last page."""
        header = answer.headers.get("X-Next-Page")
        if not header:
            return None
        following = self.resolve(header.strip())
        if following in self._seen:
            raise PagingLoop(f"LOKE paging loop: {following} was already fetched")
        self._seen.add(following)
        self.current = following
        return following
