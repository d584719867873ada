"""LOKE calls made while answering a web request (admin API, dashboard) share gunicorn's sync
workers with LOKE's webhooks: they try twice within a short budget, not the workers' minute
and more of retries; and the organization page and the lists endpoint read LOKE's lists from
a short cache, so a refresh never waits on LOKE and a LOKE that is down still shows the lists
last read."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app.lists.loke_lists import LokeListsCache
from app.loke.client import WEB_RETRY, LokeClient, RetryPolicy, current_loke_client
from app.loke.errors import LokeError
from app.loke.tokens import MemoryTokenCache, TokenSource
from devtools.crm import FakeCrm
from tests.conftest import ADMIN_TOKEN, AUTH, LOKE_CLIENT_ID, LOKE_CLIENT_SECRET, destination
from tests.support.fake_loke import FakeLoke

ORG = "org-web-calls"


@pytest.fixture
def connected(client: FlaskClient, loke: FakeLoke, crm: FakeCrm) -> FlaskClient:
    loke.set_list(ORG, "L1", "VIPs", ["C1"])
    answer = client.put(f"/api/orgs/{ORG}", json={"destination": destination(crm)}, headers=AUTH)
    assert answer.status_code == 201
    return client


def calls(loke: FakeLoke, fragment: str) -> int:
    return sum(1 for _, target in loke.requests if fragment in target)


def signed_in(client: FlaskClient) -> FlaskClient:
    def csrf() -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").get_data(True))
        assert found
        return found.group(1)

    answer = client.post("/signin", data={"token": ADMIN_TOKEN, "csrf": csrf(), "next": "/"})
    assert answer.status_code == 303
    return client


# -- the budget ---------------------------------------------------------------------------------
def test_an_admin_call_gives_up_on_a_failing_loke_after_two_tries(
    connected: FlaskClient, loke: FakeLoke
) -> None:
    loke.fail_next(20, status=500)
    answer: Any = connected.get(f"/api/orgs/{ORG}/lists", headers=AUTH)
    assert answer.status_code == 502
    assert "gave up after 2 attempts" in answer.json["error"]["message"]
    assert calls(loke, "/customer-lists") == WEB_RETRY.attempts == 2

    answer = connected.post(f"/api/orgs/{ORG}/subscription", headers=AUTH)
    assert answer.status_code == 502
    assert [m for m, t in loke.requests if "/webhooks/" in t] == ["PUT"] + ["PUT"] * 2


def test_a_web_call_does_not_wait_longer_than_loke_asks_within_its_budget(
    connected: FlaskClient, loke: FakeLoke
) -> None:
    loke.fail_next(1, status=503, retry_after="120")  # a worker would wait two minutes
    answer: Any = connected.get(f"/api/orgs/{ORG}/lists", headers=AUTH)
    assert answer.status_code == 502
    assert "budget" in answer.json["error"]["message"]
    assert calls(loke, "/customer-lists") == 1


def test_the_budget_bounds_the_tries_of_a_loke_that_hangs(loke: FakeLoke) -> None:
    loke.add_org(ORG)
    loke.delay_next(10, 1.0)  # every answer comes after each try's timeout
    with requests.Session() as http:
        tokens = TokenSource(
            http, loke.url, LOKE_CLIENT_ID, LOKE_CLIENT_SECRET, 5.0, MemoryTokenCache()
        )
        policy = RetryPolicy(attempts=10, base_seconds=0.01, cap_seconds=0.01, budget_seconds=1.0)
        client = LokeClient(loke.url, tokens, http, timeout=0.3, retry=policy)
        with pytest.raises(LokeError, match="budget"):
            client.subscriptions(ORG)
    # Each try lasts its timeout (0.3 s) at least, and none starts past the budget: four at
    # most, where the policy alone would have made ten.
    assert 1 <= calls(loke, "/webhooks") <= 4


def test_workers_keep_the_full_retry_policy(app: Flask, loke: FakeLoke) -> None:
    loke.add_org(ORG)
    loke.fail_next(2, status=500)
    with app.app_context():
        assert current_loke_client().subscriptions(ORG) == []
    assert calls(loke, "/webhooks") == 3


# -- the lists, cached ------------------------------------------------------------------------
def test_a_refresh_of_the_org_page_makes_no_loke_call_while_the_lists_are_cached(
    connected: FlaskClient, loke: FakeLoke
) -> None:
    client = signed_in(connected)
    for _ in range(3):
        assert "VIPs" in client.get(f"/orgs/{ORG}").get_data(as_text=True)
        assert connected.get(f"/api/orgs/{ORG}/lists", headers=AUTH).status_code == 200
    assert calls(loke, "/customer-lists") == 1


def test_when_loke_cannot_be_reached_the_lists_last_read_are_shown_with_a_note(
    app: Flask, connected: FlaskClient, loke: FakeLoke
) -> None:
    app.extensions["loke_lists"] = LokeListsCache(ttl_seconds=0.0, failed_ttl_seconds=0.0)
    client = signed_in(connected)
    assert "VIPs" in client.get(f"/orgs/{ORG}").get_data(as_text=True)
    loke.fail_next(20, status=500)

    shown = client.get(f"/orgs/{ORG}").get_data(as_text=True)
    assert "Could not read the lists from LOKE" in shown
    assert "VIPs" in shown  # as last read

    answer: Any = connected.get(f"/api/orgs/{ORG}/lists", headers=AUTH)
    assert answer.status_code == 200
    assert [item["name"] for item in answer.json["lists"]] == ["VIPs"]
    assert "500" in answer.json["lokeError"]
    assert answer.json["listsReadAt"] is not None


def test_a_failed_read_is_not_tried_again_at_every_refresh(
    connected: FlaskClient, loke: FakeLoke
) -> None:
    loke.fail_next(20, status=500)
    client = signed_in(connected)
    for _ in range(3):
        assert "Could not read the lists" in client.get(f"/orgs/{ORG}").get_data(as_text=True)
    assert calls(loke, "/customer-lists") == WEB_RETRY.attempts  # the first refresh only
