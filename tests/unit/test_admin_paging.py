"""`?limit=` and `?offset=` of the admin API: a value that is not a whole number in range is the
caller's mistake (400, saying what is allowed), never a database error (PostgreSQL refuses a
negative LIMIT, and a number past bigint, with an error that answered 500)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.core.config import Settings
from app.store.models import DeadLetter
from devtools.crm import FakeCrm
from tests.conftest import AUTH, destination, services_of
from tests.support.fake_loke import FakeLoke

ORG = "org-paging"
PAGED = ["/api/dead-letters", f"/api/orgs/{ORG}/conflicts"]
BAD_LIMITS = ["-1", "0", "1001", "99999999999999999999999", "ten", "1.5", "", " 5", "٣"]
BAD_OFFSETS = ["-1", "99999999999999999999999", "x", "1e3"]


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store  # PostgreSQL is the store that refused these with a 500


@pytest.fixture
def connected(client: FlaskClient, loke: FakeLoke, crm: FakeCrm) -> FlaskClient:
    loke.add_org(ORG)
    answer = client.put(f"/api/orgs/{ORG}", json={"destination": destination(crm)}, headers=AUTH)
    assert answer.status_code == 201
    return client


def get(client: FlaskClient, url: str) -> Any:
    return client.get(url, headers=AUTH)


@pytest.mark.parametrize("url", PAGED)
def test_a_limit_that_is_not_1_to_1000_is_refused_with_what_is_allowed(
    connected: FlaskClient, url: str
) -> None:
    for limit in BAD_LIMITS:
        answer = get(connected, f"{url}?limit={limit}")
        assert answer.status_code == 400, (limit, answer.get_data(as_text=True))
        assert answer.json["error"]["code"] == "invalid_request"
        assert "limit must be a whole number from 1 to 1000" in answer.json["error"]["message"]


def test_an_offset_that_is_not_a_whole_number_is_refused(connected: FlaskClient) -> None:
    for offset in BAD_OFFSETS:
        answer = get(connected, f"/api/orgs/{ORG}/conflicts?offset={offset}")
        assert answer.status_code == 400, (offset, answer.get_data(as_text=True))
        assert "offset must be a whole number" in answer.json["error"]["message"]


@pytest.mark.parametrize("url", PAGED)
def test_limits_and_offsets_in_range_are_answered(connected: FlaskClient, url: str) -> None:
    for query in ("", "?limit=1", "?limit=1000", "?limit=5&offset=0", "?limit=5&offset=999999"):
        assert get(connected, f"{url}{query}").status_code == 200, query


def test_an_organization_filter_no_store_can_hold_finds_nothing(connected: FlaskClient) -> None:
    for org_id in ("o" * 65, "a%00b"):
        answer = get(connected, f"/api/dead-letters?orgId={org_id}")
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert answer.json == {"deadLetters": []}


def test_dead_letters_are_paged_newest_first(connected: FlaskClient, app: Flask) -> None:
    now = dt.datetime.now(dt.UTC)
    with services_of(app).db.transaction() as session:
        for n in range(5):
            session.add(DeadLetter(org_id=ORG, kind="operation", reason=f"r{n}", detail={},
                                   created_at=now))  # fmt: skip
    pages = [get(connected, f"/api/dead-letters?limit=2&offset={o}") for o in (0, 2, 4)]
    reasons = [[letter["reason"] for letter in page.json["deadLetters"]] for page in pages]
    assert reasons == [["r4", "r3"], ["r2", "r1"], ["r0"]]


def test_dead_letters_filter_by_reason_and_state_like_the_dashboard(
    connected: FlaskClient, app: Flask
) -> None:
    now = dt.datetime.now(dt.UTC)
    with services_of(app).db.transaction() as session:
        for reason, replayed in (("refused: Invalid email", None), ("refused: too long", now),
                                 ("refused: invalid EMAIL", now)):  # fmt: skip
            session.add(DeadLetter(org_id=ORG, kind="operation", reason=reason, detail={},
                                   created_at=now, replayed_at=replayed))  # fmt: skip

    def reasons(query: str) -> list[str]:
        answer = get(connected, f"/api/dead-letters?{query}")
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return [letter["reason"] for letter in answer.json["deadLetters"]]

    assert reasons("reason=invalid%20email") == ["refused: invalid EMAIL", "refused: Invalid email"]
    assert reasons("reason=email&state=waiting") == ["refused: Invalid email"]
    assert reasons("state=replayed") == ["refused: invalid EMAIL", "refused: too long"]
    for bad in ("state=gone", "reason=a%00b"):
        assert get(connected, f"/api/dead-letters?{bad}").status_code == 400, bad
