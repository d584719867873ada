"""Who may sign in, call the API and scrape: same-site redirects after sign-in, the metrics
token, and the limit on failed sign-ins and API tokens per client address (in memory, and in
Redis where every web process of every machine shares it)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from app.factory import create_app
from app.store.migrate import upgrade
from app.web.guesses import Guesses
from tests.conftest import ADMIN_TOKEN, AUTH, RecordingDispatcher, make_settings, services_of
from tests.support.fake_loke import FakeLoke
from tests.support.processes import free_port, fresh_redis_database

ORG = "org-auth"
SITE = "http://localhost/"
METRICS_TOKEN = "metrics-token-0123456789abcdefghijkl"
LIMIT = 3
OTHER = {"REMOTE_ADDR": "192.0.2.7"}  # another client address


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Until `condition()` holds; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def csrf_of(client: FlaskClient) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").get_data(as_text=True))
    assert found, "no CSRF field on /signin"
    return found.group(1)


def sign_in(client: FlaskClient, token: str, next_path: str = "/") -> Any:
    data = {"token": token, "csrf": csrf_of(client), "next": next_path}
    return client.post("/signin", data=data)


def where_a_browser_goes(location: str) -> str:
    """The host a browser lands on after `Location: location` from SITE: browsers drop tabs and
    newlines anywhere in a URL, trim spaces and controls at its ends, and read '\\' as '/'."""
    cleaned = re.sub(r"[\t\n\r]", "", location).strip("\x00- ").replace("\\", "/")
    return urlsplit(urljoin(SITE, cleaned)).netloc


# -- only same-site paths after sign-in ---------------------------------------------------------
BYPASSES = [
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example",
    "\\/evil.example",
    "\\\\evil.example",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "/\t/evil.example",
    "\t//evil.example",
    "/%09/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "/%0d%0a/evil.example",
    " //evil.example",
    "/ /evil.example",
    "/\u3000/evil.example",
    "/\x00/evil.example",
    "/%2F%2Fevil.example",
    "/%2f/evil.example",
    "/%5Cevil.example",
    "/%252F%252Fevil.example",
    "/%25252F%25252Fevil.example",
    "/.%09/evil",
]


@pytest.mark.parametrize("target", BYPASSES)
def test_signing_in_never_redirects_to_another_site(app: Flask, target: str) -> None:
    client = app.test_client()
    answer = sign_in(client, ADMIN_TOKEN, target)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/"
    assert where_a_browser_goes(answer.headers["Location"]) == "localhost"
    # Signed in, the sign-in page redirects straight to `next` of its query string.
    again = client.get("/signin", query_string={"next": target})
    assert again.status_code == 303
    assert again.headers["Location"] == "/"


def test_the_sign_in_link_with_a_tab_stays_on_this_site(client: FlaskClient) -> None:
    assert sign_in(client, ADMIN_TOKEN).status_code == 303
    answer = client.get("/signin?next=/%09/evil.example")
    assert answer.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/dead-letters", f"/orgs/{ORG}", f"/dead-letters?org={ORG}"])
def test_signing_in_returns_to_the_page_asked_for(app: Flask, target: str) -> None:
    answer = sign_in(app.test_client(), ADMIN_TOKEN, target)
    assert answer.headers["Location"] == target


# -- /metrics -----------------------------------------------------------------------------------
def test_metrics_are_open_without_a_metrics_token(client: FlaskClient) -> None:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert "loke_sync_inbox_pending" in answer.get_data(as_text=True)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer ", "Bearer wrong", f"Bearer {METRICS_TOKEN}x", f"Basic {METRICS_TOKEN}",
     f"Bearer {ADMIN_TOKEN}", "Bearer \u00e9\u00e8", f"bearer {METRICS_TOKEN.upper()}"],
)  # fmt: skip
def test_metrics_need_the_metrics_token_when_it_is_set(
    app: Flask, client: FlaskClient, authorization: str | None
) -> None:
    services_of(app).settings.metrics_token = METRICS_TOKEN
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "loke_sync" not in answer.get_data(as_text=True)
    granted = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert granted.status_code == 200
    assert "loke_sync_inbox_pending" in granted.get_data(as_text=True)


# -- failed guesses, per client address ---------------------------------------------------------
@pytest.fixture(params=["memory", "redis"])
def redis_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """No Redis (the embedded mode counts in memory), then a Redis database of our own."""
    if request.param == "memory":
        yield None
        return
    with fresh_redis_database() as url:
        yield url


@pytest.fixture
def limited_app(tmp_path: Path, loke: FakeLoke, redis_url: str | None) -> Iterator[Flask]:
    """An app that allows LIMIT failures per minute, counting in memory or in Redis."""
    settings = make_settings(tmp_path, loke, auth_failures_per_minute=LIMIT, redis_url=redis_url)
    upgrade(settings.sqlalchemy_url)
    flask_app = create_app(settings, RecordingDispatcher())
    assert (services_of(flask_app).redis is None) == (redis_url is None)
    yield flask_app
    services_of(flask_app).db.dispose()


def api(client: FlaskClient, token: str | None, environ: dict[str, str] | None = None) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return client.get("/api/orgs", headers=headers, environ_base=environ or {})


def test_wrong_api_tokens_are_refused_with_429_after_the_limit_even_with_the_right_one(
    limited_app: Flask,
) -> None:
    client = limited_app.test_client()
    for _ in range(LIMIT):
        assert api(client, "wrong-token").status_code == 401
    refused = api(client, "wrong-token")
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "too_many_attempts"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Answering the right token while the wrong ones get 429 would tell a guesser when it
    # guessed right: the address is refused whatever it sends until the window passes.
    assert api(client, ADMIN_TOKEN).status_code == 429
    # Other addresses are not affected.
    assert api(client, ADMIN_TOKEN, OTHER).status_code == 200
    assert api(client, "wrong-token", OTHER).status_code == 401


def test_right_tokens_and_requests_without_one_are_never_limited(limited_app: Flask) -> None:
    client = limited_app.test_client()
    for _ in range(LIMIT * 4):
        assert api(client, ADMIN_TOKEN).status_code == 200
        assert api(client, None).status_code == 401  # no credential: not a guess
    assert api(client, ADMIN_TOKEN).status_code == 200


def test_wrong_sign_ins_are_refused_with_429_and_a_message_after_the_limit(
    limited_app: Flask,
) -> None:
    client = limited_app.test_client()
    for _ in range(LIMIT):
        assert sign_in(client, "wrong-token").status_code == 401
    refused = sign_in(client, "wrong-token")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    page = refused.get_data(as_text=True)
    assert "Too many wrong tokens" in page
    assert "Content-Security-Policy" in refused.headers  # still a dashboard page
    assert sign_in(client, ADMIN_TOKEN).status_code == 429
    assert client.get("/").status_code == 303  # not signed in
    # Another browser at the same address is refused too: the limit is the address's.
    assert sign_in(limited_app.test_client(), ADMIN_TOKEN).status_code == 429


def test_sign_in_and_the_api_share_one_count_per_address(limited_app: Flask) -> None:
    client = limited_app.test_client()
    assert sign_in(client, "wrong-token").status_code == 401
    for _ in range(LIMIT - 1):
        assert api(client, "wrong-token").status_code == 401
    assert sign_in(client, ADMIN_TOKEN).status_code == 429
    assert api(client, ADMIN_TOKEN).status_code == 429


def test_every_web_process_shares_the_count_through_redis() -> None:
    with fresh_redis_database() as url:
        first, second = (Guesses(redis.Redis.from_url(url), LIMIT) for _ in range(2))
        first.failed("198.51.100.1")
        second.failed("198.51.100.1")
        assert first.retry_after("198.51.100.1") is None
        first.failed("198.51.100.1")
        assert second.retry_after("198.51.100.1") is not None


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_an_address_may_try_again_once_the_window_has_passed(backend: str) -> None:
    with fresh_redis_database() as url:
        store = redis.Redis.from_url(url) if backend == "redis" else None
        guesses = Guesses(store, LIMIT, window_seconds=0.5)
        for _ in range(LIMIT):
            guesses.failed("198.51.100.2")
        assert guesses.retry_after("198.51.100.2") == 1  # whole seconds, rounded up
        wait_for(lambda: guesses.retry_after("198.51.100.2") is None)
        guesses.failed("198.51.100.2")  # a new window, counted from one
        assert guesses.retry_after("198.51.100.2") is None


def test_the_window_starts_at_the_first_failure_and_is_not_stretched_by_more() -> None:
    now = [1000.0]
    guesses = Guesses(None, LIMIT, window_seconds=60, clock=lambda: now[0])
    for _ in range(LIMIT):
        guesses.failed("198.51.100.3")
        now[0] += 10
    assert guesses.retry_after("198.51.100.3") == 30
    now[0] += 29.5
    assert guesses.retry_after("198.51.100.3") == 1
    now[0] += 0.5
    assert guesses.retry_after("198.51.100.3") is None


def test_redis_down_lets_every_attempt_through_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = redis.Redis(port=free_port(), socket_connect_timeout=1, socket_timeout=1)
    guesses = Guesses(down, 1)
    with caplog.at_level(logging.WARNING, logger="app.web.guesses"):
        for _ in range(3):
            guesses.failed("198.51.100.4")
        assert guesses.retry_after("198.51.100.4") is None
    assert "failed sign-in" in caplog.text


def test_an_api_behind_a_redis_that_is_down_still_answers(tmp_path: Path, loke: FakeLoke) -> None:
    settings = make_settings(
        tmp_path, loke, auth_failures_per_minute=1, redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    upgrade(settings.sqlalchemy_url)
    flask_app = create_app(settings, RecordingDispatcher())
    client = flask_app.test_client()
    for _ in range(3):
        assert api(client, "wrong-token").status_code == 401
    assert client.get("/api/orgs", headers=AUTH).status_code == 200
    services_of(flask_app).db.dispose()


@pytest.mark.parametrize("hops", [0, 1])
def test_behind_a_trusted_proxy_each_forwarded_client_is_counted_apart(
    tmp_path: Path, loke: FakeLoke, hops: int
) -> None:
    settings = make_settings(
        tmp_path, loke, auth_failures_per_minute=LIMIT, trusted_proxy_hops=hops
    )
    upgrade(settings.sqlalchemy_url)
    flask_app = create_app(settings, RecordingDispatcher())
    client = flask_app.test_client()

    def from_client(address: str, token: str) -> int:
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": address}
        status: int = client.get("/api/orgs", headers=headers).status_code
        return status

    for _ in range(LIMIT):
        from_client("203.0.113.7", "wrong-token")
    # Trusted, the proxy's header tells clients apart; untrusted, it is anyone's to forge, and
    # every client is the proxy.
    assert from_client("198.51.100.9", ADMIN_TOKEN) == (200 if hops else 429)
    assert from_client("203.0.113.7", ADMIN_TOKEN) == 429
    services_of(flask_app).db.dispose()
