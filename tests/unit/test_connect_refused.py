"""Connecting an organization LOKE will not let us connect (no client credentials configured,
credentials LOKE refuses, an organization that has not installed the add-on, a subscription
LOKE refuses, LOKE down) is refused with a clear answer and leaves nothing behind: no
organization (or the one known before, unchanged), no backfill, no subscription at LOKE. Once
the cause is put right, the same connect works."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.core.config import Settings
from app.core.services import Services
from app.core.task_names import BACKFILL_PAGE
from app.factory import create_app
from app.loke.client import WEB_RETRY
from app.orgs import connect as org_connect
from app.orgs.purge import per_org_tables
from app.store.models import DeadLetter, Organization
from devtools.crm import FakeCrm
from devtools.httpserver import Request, Response
from devtools.sandbox import api as sandbox_api
from tests.conftest import AUTH, RecordingDispatcher, destination, services_of
from tests.support.fake_loke import FakeLoke

ORG = "org-refused"


class ProcessDied(BaseException):
    """A killed process: nothing after this point ran (no handler turns it into an answer)."""


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store


@pytest.fixture
def other_app(app: Flask, settings: Settings) -> Iterator[Callable[..., FlaskClient]]:
    """A client of the same service (same store, schema already there) run with other
    settings: another process of it, started with other environment variables."""
    made: list[Flask] = []

    def client_with(**changes: Any) -> FlaskClient:
        made.append(create_app(settings.model_copy(update=changes), RecordingDispatcher()))
        return made[-1].test_client()

    yield client_with
    for flask_app in made:
        services_of(flask_app).db.dispose()


def put(client: FlaskClient, crm: FakeCrm, **overrides: Any) -> Any:
    body = {"destination": destination(crm, **overrides)}
    return client.put(f"/api/orgs/{ORG}", json=body, headers=AUTH)


def stored_of(services: Services, org_id: str = ORG) -> dict[str, int]:
    """Rows kept of the organization, by table (every table with an org_id, and its own row)."""
    counts = {}
    with services.db.engine.connect() as connection:
        for table in per_org_tables():
            query = select(func.count()).select_from(table).where(table.c.org_id == org_id)
            counts[table.name] = connection.execute(query).scalar_one()
        own = select(func.count()).select_from(Organization).where(Organization.id == org_id)
        counts["organizations"] = connection.execute(own).scalar_one()
    return {name: count for name, count in counts.items() if count}


def assert_nothing_left(
    services: Services, loke: FakeLoke, dispatcher: RecordingDispatcher
) -> None:
    assert stored_of(services) == {}
    assert loke.subscriptions == {}
    assert BACKFILL_PAGE not in dispatcher.names()


def assert_connects_now(client: FlaskClient, crm: FakeCrm, loke: FakeLoke) -> None:
    answer = put(client, crm)
    assert answer.status_code == 201, answer.json
    assert answer.json["subscription"]["status"] == "ok"
    assert answer.json["backfill"]["status"] == "running"
    assert (ORG, "loke-crm-sync") in loke.subscriptions


def refusing_subscriptions(
    loke: FakeLoke, monkeypatch: pytest.MonkeyPatch, during: Callable[[], None] = lambda: None
) -> None:
    """LOKE answers 403 to our subscription PUT only (its other calls go through), running
    `during` while it holds the request: a refusal that only the PUT itself meets."""
    real = loke._api

    def refusing(request: Request, parts: list[str]) -> Response:
        if request.method == "PUT" and "webhooks" in parts:
            during()
            return sandbox_api.error(403, "Forbidden: not allowed for this add-on", "forbidden")
        return real(request, parts)

    monkeypatch.setattr(loke, "_api", refusing)


def test_a_connect_without_loke_credentials_is_refused_naming_them(
    client: FlaskClient,
    services: Services,
    loke: FakeLoke,
    crm: FakeCrm,
    dispatcher: RecordingDispatcher,
    other_app: Callable[..., FlaskClient],
) -> None:
    loke.add_org(ORG)
    unconfigured = other_app(loke_client_id=None, loke_client_secret=None)

    answer = put(unconfigured, crm)

    assert answer.status_code == 400, answer.json
    assert answer.json["error"]["code"] == "loke_not_configured"
    assert "LOKE_CLIENT_ID and LOKE_CLIENT_SECRET" in answer.json["error"]["message"]
    assert_nothing_left(services, loke, dispatcher)
    assert loke.requests == []  # LOKE was not even asked
    assert client.get(f"/api/orgs/{ORG}", headers=AUTH).status_code == 404
    assert_connects_now(client, crm, loke)


def test_credentials_loke_refuses_are_refused(
    client: FlaskClient,
    services: Services,
    loke: FakeLoke,
    crm: FakeCrm,
    dispatcher: RecordingDispatcher,
    other_app: Callable[..., FlaskClient],
) -> None:
    loke.add_org(ORG)
    misconfigured = other_app(loke_client_secret="not-the-add-on-secret")

    answer = put(misconfigured, crm)

    assert answer.status_code == 409, answer.json
    assert answer.json["error"]["code"] == "loke_refused"
    message = answer.json["error"]["message"]
    assert "LOKE_CLIENT_SECRET" in message
    assert "invalid_client" in message
    assert_nothing_left(services, loke, dispatcher)
    assert_connects_now(client, crm, loke)


def test_an_organization_that_has_not_installed_the_add_on_is_refused(
    client: FlaskClient,
    services: Services,
    loke: FakeLoke,
    crm: FakeCrm,
    dispatcher: RecordingDispatcher,
) -> None:
    answer = put(client, crm)  # LOKE does not know ORG: 404

    assert answer.status_code == 409, answer.json
    assert answer.json["error"]["code"] == "loke_refused"
    assert "installed the add-on" in answer.json["error"]["message"]
    assert_nothing_left(services, loke, dispatcher)
    loke.add_org(ORG)
    assert_connects_now(client, crm, loke)


@pytest.mark.parametrize("down", ["5xx", "unreachable"])
def test_when_loke_is_down_the_connect_is_refused_as_unavailable(
    client: FlaskClient,
    services: Services,
    loke: FakeLoke,
    crm: FakeCrm,
    dispatcher: RecordingDispatcher,
    other_app: Callable[..., FlaskClient],
    down: str,
) -> None:
    loke.add_org(ORG)
    if down == "5xx":
        loke.fail_next(WEB_RETRY.attempts, status=500)  # every try a web request makes
        answer = put(client, crm)
    else:  # nothing listens on port 9 (discard) of this machine
        nowhere = "http://127.0.0.1:9"
        answer = put(other_app(loke_api_url=nowhere, loke_auth_url=nowhere), crm)

    assert answer.status_code == 503, answer.json
    assert answer.json["error"]["code"] == "loke_unavailable"
    assert "try again" in answer.json["error"]["message"]
    assert_nothing_left(services, loke, dispatcher)
    assert_connects_now(client, crm, loke)


def test_a_subscription_loke_refuses_undoes_a_new_organization(
    client: FlaskClient,
    services: Services,
    loke: FakeLoke,
    crm: FakeCrm,
    dispatcher: RecordingDispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loke.add_org(ORG)
    swept: list[list[str]] = []
    # While LOKE holds the PUT, the organization is connected here: the sweep must not start
    # its backfill (which the undo would then have to chase).
    refusing_subscriptions(
        loke,
        monkeypatch,
        during=lambda: swept.append(org_connect.start_missing_backfills(services)),
    )

    answer = put(client, crm)

    assert answer.status_code == 409, answer.json
    assert answer.json["error"]["code"] == "loke_refused"
    assert "403 Forbidden: not allowed for this add-on" in answer.json["error"]["message"]
    assert swept == [[]]
    assert_nothing_left(services, loke, dispatcher)
    monkeypatch.undo()
    assert_connects_now(client, crm, loke)


def test_a_known_organization_whose_reconnect_loke_refuses_keeps_what_it_had(
    client: FlaskClient,
    services: Services,
    loke: FakeLoke,
    crm: FakeCrm,
    dispatcher: RecordingDispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loke.add_org(ORG)
    assert put(client, crm).status_code == 201
    assert client.delete(f"/api/orgs/{ORG}", headers=AUTH).status_code == 200
    before = columns(services)
    runs, sent = stored_of(services)["backfill_runs"], len(dispatcher.sent)
    refusing_subscriptions(loke, monkeypatch)

    answer = put(client, crm, batchSize=7, maxRequestsPerSecond=3)

    assert answer.status_code == 409, answer.json
    assert columns(services) == before  # disconnected, its old settings and secrets
    assert stored_of(services)["backfill_runs"] == runs
    assert len(dispatcher.sent) == sent
    monkeypatch.undo()
    again = put(client, crm, batchSize=7)
    assert again.status_code == 201, again.json
    assert again.json["destination"]["batchSize"] == 7


def columns(services: Services) -> dict[str, Any]:
    with services.db.transaction() as session:
        org = session.get(Organization, ORG)
        assert org is not None
        return {key: value for key, value in vars(org).items() if not key.startswith("_")}


def test_the_sweep_starts_the_backfill_of_a_connect_that_died_subscribing_once_it_is_stale(
    client: FlaskClient,
    services: Services,
    loke: FakeLoke,
    crm: FakeCrm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loke.add_org(ORG)

    def dies(*args: Any, **kwargs: Any) -> bool:
        raise ProcessDied("while LOKE held the subscription PUT")

    monkeypatch.setattr(org_connect, "subscribe", dies)
    with pytest.raises(ProcessDied):
        put(client, crm)
    assert org_connect.start_missing_backfills(services) == []  # it may be subscribing yet
    with services.db.transaction() as session:
        org = session.get(Organization, ORG)
        assert org is not None
        assert org.subscription_status == "pending"
        org.updated_at -= dt.timedelta(seconds=org_connect.CONNECTING_SECONDS + 1)

    assert org_connect.start_missing_backfills(services) == [ORG]


# -- a JSON body whatever its Content-Type ----------------------------------------------------
def test_a_json_body_sent_as_a_form_is_read_as_json(
    client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    loke.add_org(ORG)
    raw = json.dumps({"destination": destination(crm)})
    for content_type in ("application/x-www-form-urlencoded", None, "text/plain"):
        headers = AUTH if content_type is None else AUTH | {"Content-Type": content_type}
        answer: Any = client.put(f"/api/orgs/{ORG}", data=raw, headers=headers)
        assert answer.status_code in (200, 201), (content_type, answer.json)
    answer = client.put(
        f"/api/orgs/{ORG}", data="destination=x", headers=AUTH | {"Content-Type": "text/plain"}
    )
    assert answer.status_code == 400
    assert "JSON object" in answer.json["error"]["message"]


def test_a_bulk_replay_filter_sent_as_a_form_is_applied(
    client: FlaskClient, services: Services
) -> None:
    now = dt.datetime.now(dt.UTC)
    with services.db.transaction() as session:
        for org in ("org-x", "org-x", "org-y"):
            session.add(DeadLetter(org_id=org, kind="operation", reason="refused", created_at=now,
                                   detail={"keys": [["contact", "C1"]]}))  # fmt: skip
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends

    answer: Any = client.post(
        "/api/dead-letters/replay", data='{"orgId": "org-x"}', headers=AUTH | form
    )

    assert answer.status_code == 202, answer.json
    assert answer.json["replayed"] == 2  # org-x's, not every one
    with services.db.transaction() as session:
        waiting = session.scalars(select(DeadLetter.org_id).where(DeadLetter.replayed_at.is_(None)))
        assert list(waiting) == ["org-y"]
