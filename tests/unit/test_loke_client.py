"""The LOKE client against the fake LOKE (a real HTTP server): tokens, paging, retries, errors."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import fakeredis
import pytest
import requests

from app.loke import tokens
from app.loke.client import LokeClient, RetryPolicy, UnreadPage
from app.loke.errors import LokeError, PagingLoop
from app.loke.paging import Paginator
from app.loke.tokens import MemoryTokenCache, RedisTokenCache, TokenCache, TokenSource
from tests.conftest import LOKE_CLIENT_ID, LOKE_CLIENT_SECRET
from tests.support.fake_loke import FakeLoke, make_customer

ORG = "org-client"
FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


class Clock:
    """The token caches' clock, moved by the test: a token's life passes without waiting for
    it, and however slowly the calls run, none of it passes unless the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moved = Clock()
    monkeypatch.setattr(tokens, "time", moved)  # the module's `time` only, not the fake LOKE's
    return moved


def client_for(
    loke: FakeLoke,
    http: requests.Session,
    cache: TokenCache | None = None,
    secret: str = LOKE_CLIENT_SECRET,
    timeout: float = 5.0,
) -> LokeClient:
    tokens = TokenSource(
        http, loke.url, LOKE_CLIENT_ID, secret, timeout, cache or MemoryTokenCache()
    )
    return LokeClient(loke.url, tokens, http, timeout=timeout, retry=FAST)


def seed(loke: FakeLoke, count: int) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    loke.set_customers(
        ORG, [make_customer(f"C{n:05d}", start + dt.timedelta(minutes=n)) for n in range(count)]
    )


@pytest.mark.parametrize("relative", [False, True])
def test_paging_follows_x_next_page_whether_absolute_or_relative(
    loke: FakeLoke, http: requests.Session, relative: bool
) -> None:
    loke.relative_next_page = relative
    loke.page_size = 100
    seed(loke, 250)
    ids = [c["id"] for c in client_for(loke, http).iterate(f"/organizations/{ORG}/customers")]
    assert ids == [f"C{n:05d}" for n in range(250)]
    pages = [t for m, t in loke.requests if "/customers" in t]
    assert len(pages) == 3


def test_a_page_url_seen_before_is_a_paging_loop_not_an_endless_walk() -> None:
    paginator = Paginator("https://api.example", "/organizations/o/customers")
    first = requests.Response()
    first.headers["X-Next-Page"] = "/organizations/o/customers?after=Mg"
    assert paginator.advance(first) == "https://api.example/organizations/o/customers?after=Mg"
    again = requests.Response()
    again.headers["X-Next-Page"] = "https://api.example/organizations/o/customers"
    with pytest.raises(PagingLoop, match="already fetched"):
        paginator.advance(again)


def test_one_token_serves_many_calls_and_is_shared_through_redis(
    loke: FakeLoke, http: requests.Session
) -> None:
    loke.add_org(ORG)
    shared = fakeredis.FakeRedis()
    first = client_for(loke, http, RedisTokenCache(shared, LOKE_CLIENT_ID))
    second = client_for(loke, http, RedisTokenCache(shared, LOKE_CLIENT_ID))
    for _ in range(3):
        first.subscriptions(ORG)
        second.subscriptions(ORG)
    assert loke.token_requests == 1


def test_each_process_keeps_the_shared_token_until_the_expiry_redis_gave_it(
    loke: FakeLoke, http: requests.Session, clock: Clock
) -> None:
    loke.add_org(ORG)
    loke.token_ttl = 3600  # kept for 3540 s (the refresh margin is a minute)
    shared = fakeredis.FakeRedis()
    first = client_for(loke, http, RedisTokenCache(shared, LOKE_CLIENT_ID))
    second = client_for(loke, http, RedisTokenCache(shared, LOKE_CLIENT_ID))
    first.subscriptions(ORG)
    second.subscriptions(ORG)  # the token from Redis, with its time left
    shared.flushall()  # no round trip to Redis per call: each process has its copy
    # (Redis counts the time left in real time: the slack below is what the real calls may
    # take, far beyond any run, so that only the moved clock decides.)
    clock.advance(3000)
    first.subscriptions(ORG)
    second.subscriptions(ORG)
    assert loke.token_requests == 1
    clock.advance(600)  # both copies expired with the token
    first.subscriptions(ORG)  # a new token, shared again
    second.subscriptions(ORG)  # taken from Redis
    assert loke.token_requests == 2


def test_a_token_is_renewed_before_it_expires(
    loke: FakeLoke, http: requests.Session, clock: Clock
) -> None:
    loke.add_org(ORG)
    loke.token_ttl = 100  # shorter than twice the refresh margin: kept for half its life only
    client = client_for(loke, http)
    client.subscriptions(ORG)
    clock.advance(49)
    client.subscriptions(ORG)
    assert loke.token_requests == 1
    clock.advance(2)  # half its life gone: LOKE would still take it, and it is renewed anyway
    client.subscriptions(ORG)
    assert loke.token_requests == 2


def test_a_401_renews_the_token_once_and_retries(loke: FakeLoke, http: requests.Session) -> None:
    loke.add_org(ORG)
    client = client_for(loke, http)
    client.subscriptions(ORG)
    loke.expire_all_tokens()
    assert client.subscriptions(ORG) == []
    assert loke.token_requests == 2


def test_wrong_credentials_are_a_clear_error(loke: FakeLoke, http: requests.Session) -> None:
    loke.add_org(ORG)
    with pytest.raises(LokeError, match="LOKE refused a token: 401"):
        client_for(loke, http, secret="wrong").subscriptions(ORG)


def test_429_and_5xx_are_retried_and_retry_after_is_honoured(
    loke: FakeLoke, http: requests.Session
) -> None:
    loke.add_org(ORG)
    loke.fail_next(1, status=429, retry_after="0.3")
    loke.fail_next(1, status=503)
    started = time.monotonic()
    assert client_for(loke, http).subscriptions(ORG) == []
    assert time.monotonic() - started >= 0.3


def test_a_timeout_is_retried(loke: FakeLoke, http: requests.Session) -> None:
    loke.add_org(ORG)
    loke.delay_next(1, 1.5)
    assert client_for(loke, http, timeout=0.5).subscriptions(ORG) == []


def test_retries_are_bounded_then_the_error_carries_lokes_message(
    loke: FakeLoke, http: requests.Session
) -> None:
    loke.add_org(ORG)
    loke.fail_next(10, status=500)
    with pytest.raises(LokeError, match=r"500 Injected failure \(injected\).*after 4 attempts"):
        client_for(loke, http).subscriptions(ORG)


def test_a_4xx_is_not_retried_and_says_what_loke_said(
    loke: FakeLoke, http: requests.Session
) -> None:
    with pytest.raises(LokeError, match="404 Not found") as raised:
        client_for(loke, http).subscriptions("no-such-org")
    assert raised.value.not_found
    assert not raised.value.retryable
    assert len([t for m, t in loke.requests if "no-such-org" in t]) == 1


def test_a_page_body_that_is_not_a_json_list_is_a_retryable_loke_error() -> None:
    for body, problem in (
        (b'[{"id": "C1"', "unreadable body"),
        (b'{"id": "C1"}', "expected a list"),
    ):
        answer = requests.Response()
        answer.status_code, answer._content = 200, body
        unread = UnreadPage(
            "https://loke.test/customers", "https://loke.test/customers?p=2", answer
        )
        with pytest.raises(LokeError, match=problem) as raised:
            unread.parsed()
        assert raised.value.retryable
