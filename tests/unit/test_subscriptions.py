"""The daily subscription check: intact subscriptions are left alone, drifted ones repaired."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.loke.client import current_loke_client
from app.orgs import subscriptions
from app.store.models import Organization
from devtools.crm import FakeCrm
from tests.conftest import AUTH, destination, services_of
from tests.support.fake_loke import FakeLoke

ORG = "org-subscribed"


@pytest.fixture
def connected(app: Flask, loke: FakeLoke, crm: FakeCrm) -> FlaskClient:
    loke.add_org(ORG)
    client = app.test_client()
    answer = client.put(f"/api/orgs/{ORG}", json={"destination": destination(crm)}, headers=AUTH)
    assert answer.status_code == 201
    return client


def puts(loke: FakeLoke) -> int:
    return sum(1 for method, target in loke.requests if method == "PUT" and "webhooks" in target)


def check(app: Flask) -> subscriptions.Checked:
    with app.app_context():
        return subscriptions.check_one(services_of(app), current_loke_client(), ORG)


def test_an_intact_subscription_is_left_alone(
    app: Flask, connected: FlaskClient, loke: FakeLoke
) -> None:
    before = puts(loke)
    assert check(app).state == "ok"
    assert puts(loke) == before


def test_a_deleted_subscription_is_put_back_with_the_same_secret(
    app: Flask, connected: FlaskClient, loke: FakeLoke
) -> None:
    secret = loke.secret_for(ORG)
    loke.subscriptions.clear()
    result = check(app)
    assert (result.state, result.detail) == ("repaired", "missing")
    assert loke.secret_for(ORG) == secret
    with services_of(app).db.transaction() as session:
        org = session.get(Organization, ORG)
        assert org is not None
        assert org.subscription_status == "ok"


def test_a_subscription_pointing_elsewhere_is_repaired(
    app: Flask, connected: FlaskClient, loke: FakeLoke
) -> None:
    [key] = loke.subscriptions
    loke.subscriptions[key]["url"] = "https://somewhere.else/hook"
    loke.subscriptions[key]["events"] = ["customer.created"]
    assert check(app).state == "repaired"
    [sub] = loke.subscriptions.values()
    assert sub["url"].endswith(f"/webhooks/loke/{ORG}")
    assert len(sub["events"]) == 5


def test_when_loke_refuses_the_check_the_error_is_recorded(
    app: Flask, connected: FlaskClient, loke: FakeLoke
) -> None:
    loke.fail_next(1, status=403)
    result = check(app)
    assert result.state == "error"
    status = connected.get(f"/api/orgs/{ORG}", headers=AUTH).get_json()
    assert isinstance(status, dict)
    assert status["subscription"]["status"] == "error"
    assert "403" in status["subscription"]["error"]
