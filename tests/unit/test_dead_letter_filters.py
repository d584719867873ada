"""The dashboard's dead letters, on both stores: filtered by organization, reason (a part, any
case, taken literally) and state, counted, paged; and the bulk replay of what the filter shows,
back on the page it was sent from."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.core.config import Settings
from app.core.services import Services
from app.store.models import DeadLetter
from tests.unit.test_dashboard import csrf_of, flashed, page, sign_in

ORG, OTHER = "org-letters", "org-else"
NOW = dt.datetime(2026, 9, 1, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store  # LIKE, counts and paging run on either store


@pytest.fixture
def csrf(client: FlaskClient) -> str:
    assert sign_in(client).status_code == 303
    return csrf_of(client, "/")


def add_letters(services: Services, org: str, reason: str, n: int, replayed: bool = False) -> None:
    when = NOW if replayed else None
    with services.db.transaction() as session:
        for i in range(n):
            keys = [["contact", f"{org}-{reason}-{i}"]]
            letter = DeadLetter(org_id=org, kind="operation", reason=reason, detail={"keys": keys})
            letter.created_at, letter.replayed_at, letter.replay_count = NOW, when, int(replayed)
            session.add(letter)


def shown_ids(html: str) -> set[int]:
    return {int(found) for found in re.findall(r'id="dead-letter-(\d+)"', html)}


def ids_of(services: Services, org: str | None = None, reason: str | None = None) -> set[int]:
    with services.db.transaction() as session:
        query = select(DeadLetter.id)
        if org is not None:
            query = query.where(DeadLetter.org_id == org)
        if reason is not None:
            query = query.where(DeadLetter.reason == reason)
        return set(session.scalars(query))


def counts(html: str) -> tuple[int, int]:
    """(matching, waiting) as the page states them."""
    found = re.search(r'id="dead-letter-counts">\s*<strong>(\d+)</strong>.*?<strong>(\d+)</strong>',
                      html, re.S)  # fmt: skip
    assert found, html
    return int(found.group(1)), int(found.group(2))


def test_the_filters_take_an_organization_a_reason_and_a_state_and_count_them(
    client: FlaskClient, services: Services, csrf: str
) -> None:
    add_letters(services, ORG, "CRM said: invalid email", 2)
    add_letters(services, ORG, "name too long", 1)
    add_letters(services, ORG, "invalid email (old)", 1, replayed=True)
    add_letters(services, OTHER, "Invalid Email", 1)
    shown = page(client, f"/dead-letters?org={ORG}&reason=EMAIL")
    wanted = ids_of(services, ORG, "CRM said: invalid email") | ids_of(
        services, ORG, "invalid email (old)"
    )
    assert shown_ids(shown) == wanted
    assert counts(shown) == (3, 2)
    assert f'<option value="{ORG}" selected>' in shown
    waiting = page(client, f"/dead-letters?org={ORG}&reason=email&state=waiting")
    assert shown_ids(waiting) == ids_of(services, ORG, "CRM said: invalid email")
    assert counts(waiting) == (2, 2)
    everywhere = page(client, "/dead-letters?reason=email&state=replayed")
    assert shown_ids(everywhere) == ids_of(services, ORG, "invalid email (old)")
    assert counts(page(client, "/dead-letters")) == (5, 4)
    # A reason is matched literally: % and _ are not wildcards.
    assert "No dead letters match this filter" in page(client, "/dead-letters?reason=%25")
    assert shown_ids(page(client, "/dead-letters?reason=+name+")) == ids_of(
        services, ORG, "name too long"
    )


@pytest.mark.parametrize(
    "query", ["reason=a%00b", "org=" + "x" * 65, "offset=-1", "limit=0", "state=lost"]
)
def test_a_filter_that_cannot_be_applied_is_a_400_that_says_why(
    client: FlaskClient, services: Services, csrf: str, query: str
) -> None:
    add_letters(services, ORG, "refused", 1)
    answer = client.get(f"/dead-letters?{query}")
    assert answer.status_code == 400
    assert "Not filtered:" in answer.get_data(as_text=True)
    assert shown_ids(answer.get_data(as_text=True)) == set()


def test_pages_of_fifty_keep_the_filter_and_cover_every_letter_once(
    client: FlaskClient, services: Services, csrf: str
) -> None:
    add_letters(services, ORG, "refused", 120)
    add_letters(services, OTHER, "refused", 3)
    seen: list[int] = []
    url: str | None = f"/dead-letters?org={ORG}"
    while url is not None:
        shown = page(client, url)
        assert counts(shown) == (120, 120)
        ids = shown_ids(shown)
        assert len(ids) <= 50
        seen += sorted(ids, reverse=True)
        older = re.search(r'href="([^"]+)" rel="next"', shown)
        url = older.group(1).replace("&amp;", "&") if older else None
        assert url is None or f"org={ORG}" in url
    assert seen == sorted(ids_of(services, ORG), reverse=True)
    assert len(seen) == 120


def test_bulk_replay_takes_the_waiting_letters_the_filter_shows_and_comes_back_to_it(
    client: FlaskClient, services: Services, csrf: str
) -> None:
    add_letters(services, ORG, "invalid email", 2)
    add_letters(services, ORG, "name too long", 1)
    add_letters(services, OTHER, "invalid email", 1)
    here = f"/dead-letters?org={ORG}&reason=email"
    shown = page(client, here)
    assert "Replay the 2 waiting that match" in shown
    form = dict(re.findall(r'name="(org|reason|next)" value="([^"]*)"', shown))
    assert form == {"org": ORG, "reason": "email", "next": here.replace("&", "&amp;")}
    form["next"] = form["next"].replace("&amp;", "&")
    answer = client.post("/dead-letters/replay", data={**form, "csrf": csrf})
    assert answer.headers["Location"] == here
    after = flashed(client, answer)
    assert "2 dead letters are being replayed" in after
    assert counts(after) == (2, 0)
    with services.db.transaction() as session:
        waiting = set(
            session.scalars(select(DeadLetter.id).where(DeadLetter.replayed_at.is_(None)))
        )
    assert waiting == ids_of(services, ORG, "name too long") | ids_of(services, OTHER)
    assert 'id="replay-all" disabled' in after
