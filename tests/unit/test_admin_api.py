"""The admin API: bearer token on every route, validation of connects, no secret ever shown,
disconnects that really stop webhooks, secrets encrypted at rest, health and readiness."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.routing import IntegerConverter

from app.core.secrets_box import SecretBox, SecretKeyMismatch
from app.core.services import Services
from app.delivery.sender import flush_org
from app.factory import create_app
from app.ingest.apply import drain_inbox
from devtools.crm import FakeCrm
from tests.conftest import (
    AUTH,
    CRM_SECRET,
    SECRET_KEY,
    RecordingDispatcher,
    destination,
    make_settings,
    services_of,
)
from tests.support.fake_loke import (
    FakeLoke,
    customer_event,
    make_customer,
    make_payment,
    payment_event,
    sign,
    statistics_event,
)

ORG = "org-admin"
NOW = dt.datetime(2026, 9, 1, 10, 0, tzinfo=dt.UTC)
SUBSCRIPTION = (ORG, "loke-crm-sync")
EVENTS = [
    "customer.created",
    "customer.updated",
    "customer.updated-statistics",
    "payment.completed",
    "payment.refunded",
]


def call(client: FlaskClient, method: str, url: str) -> Any:
    """An admin call with the token (typed loosely, so that `.json[...]` reads plainly)."""
    return client.open(url, method=method, headers=AUTH)


def put_org(client: FlaskClient, body: Any, org: str = ORG) -> Any:
    return client.put(f"/api/orgs/{org}", json=body, headers=AUTH)


@pytest.fixture
def connected(client: FlaskClient, loke: FakeLoke, crm: FakeCrm) -> str:
    """Connects ORG; returns the webhook secret LOKE was given."""
    loke.add_org(ORG)
    answer = put_org(client, {"destination": destination(crm)})
    assert answer.status_code == 201, answer.json
    return loke.secret_for(ORG)


def post_webhook(client: FlaskClient, secret: str, body: dict[str, Any]) -> int:
    raw = json.dumps(body, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Event-Signature": sign(raw, secret)}
    status: int = client.post(f"/webhooks/loke/{ORG}", data=raw, headers=headers).status_code
    return status


def created(customer_id: str) -> dict[str, Any]:
    return customer_event("customer.created", ORG, make_customer(customer_id, NOW))


def org_row(services: Services) -> dict[str, Any]:
    with services.db.engine.connect() as connection:
        row = connection.execute(
            text("SELECT webhook_secret_enc, destination_secret_enc FROM organizations")
        ).one()
    return dict(row._mapping)


# -- authentication -----------------------------------------------------------------------------
def api_routes(app: Flask) -> list[tuple[str, str]]:
    """(method, url) of every /api rule, with placeholder values for its arguments."""
    adapter = app.url_map.bind("localhost")
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api"):
            continue
        values = {
            name: 1 if isinstance(converter, IntegerConverter) else "x"
            for name, converter in rule._converters.items()
        }
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((method, adapter.build(rule.endpoint, values, method=method)))
    return routes


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Bearer "},
        {"Authorization": AUTH["Authorization"].replace("Bearer ", "Basic ")},
        {"Authorization": AUTH["Authorization"] + "x"},
        {"Authorization": AUTH["Authorization"].lower()},
    ],
    ids=["none", "wrong", "empty", "basic", "longer", "lowercase"],
)
def test_every_api_route_refuses_without_the_bearer_token(
    app: Flask,
    client: FlaskClient,
    services: Services,
    connected: str,
    loke: FakeLoke,
    headers: dict[str, str],
) -> None:
    routes = api_routes(app)
    assert {("PUT", "/api/orgs/x"), ("DELETE", "/api/orgs/x"), ("GET", "/api/orgs")} <= set(routes)
    assert ("POST", "/api/dead-letters/1/replay") in routes
    for method, url in [*routes, *[(m, u.replace("/x", f"/{ORG}", 1)) for m, u in routes]]:
        answer: Any = client.open(url, method=method, headers=headers, json={})
        assert answer.status_code == 401, (method, url)
        assert answer.json["error"]["code"] == "unauthorized"
    # Nothing was done on the way.
    assert call(client, "GET", f"/api/orgs/{ORG}").json["connected"] is True
    assert SUBSCRIPTION in loke.subscriptions
    assert call(client, "GET", "/api/orgs").status_code == 200


# -- connecting ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "destination is required"),
        ({"lists": []}, "destination is required"),
        ({"destination": {"type": "salesforce", "url": "http://x"}}, "destination.type"),
        ({"destination": {"url": "http://x", "secret": "s" * 10}}, "destination.type"),
        ({"destination": "http"}, "destination"),
        ({"destination": {"type": "http", "url": "http://x"}}, "destination.secret is required"),
        ({"destination": {"type": "http", "url": "not a url", "secret": "s" * 10}}, "url"),
        ("batch", "batchSize"),
        ({"destination": {"type": "http", "url": "http://x", "secret": "short"}}, "secret"),
        ({"destination": {"type": "http", "url": "http://x", "secret": "s" * 10}, "x": 1}, "x"),
        (
            {"destination": {"type": "http", "url": "http://x", "secret": "s" * 10}, "lists": [5]},
            "lists",
        ),
        ([1, 2], "must be a JSON object"),
        ("a string", "must be a JSON object"),
        (None, "must be a JSON object"),
    ],
)
def test_a_bad_connect_request_is_refused_and_nothing_is_stored(
    client: FlaskClient, loke: FakeLoke, crm: FakeCrm, body: Any, message: str
) -> None:
    loke.add_org(ORG)
    if body == "batch":
        body = {"destination": destination(crm, batchSize=0)}
    answer = put_org(client, body)
    assert answer.status_code == 400, answer.json
    assert answer.json["error"]["code"] == "invalid_request"
    assert message in answer.json["error"]["message"]
    assert call(client, "GET", "/api/orgs").json == {"orgs": []}
    assert call(client, "GET", f"/api/orgs/{ORG}").status_code == 404
    assert loke.subscriptions == {}


def test_a_body_that_is_not_json_is_refused(client: FlaskClient, loke: FakeLoke) -> None:
    headers = AUTH | {"Content-Type": "application/json"}
    answer: Any = client.put(f"/api/orgs/{ORG}", data=b"{nope", headers=headers)
    assert answer.status_code == 400
    assert "JSON object" in answer.json["error"]["message"]
    assert call(client, "GET", "/api/orgs").json == {"orgs": []}


def test_the_first_connect_subscribes_the_five_events_at_loke(
    client: FlaskClient, services: Services, loke: FakeLoke, crm: FakeCrm
) -> None:
    loke.add_org(ORG)
    answer = put_org(client, {"destination": destination(crm), "name": "Cafe"})
    assert answer.status_code == 201
    assert answer.json["connected"] is True
    subscription = loke.subscriptions[SUBSCRIPTION]
    public_url = services.settings.public_url.rstrip("/")
    assert subscription["url"] == f"{public_url}/webhooks/loke/{ORG}"
    assert sorted(subscription["events"]) == EVENTS
    assert len(subscription["secret"]) >= 32
    assert answer.json["subscription"]["status"] == "ok"


def test_a_second_put_updates_and_keeps_the_secrets_when_omitted(
    client: FlaskClient, services: Services, loke: FakeLoke, crm: FakeCrm, connected: str
) -> None:
    without_secret = {k: v for k, v in destination(crm, batchSize=7).items() if k != "secret"}
    answer = put_org(client, {"destination": without_secret, "lists": ["L1"]})
    assert answer.status_code == 200
    assert answer.json["destination"]["batchSize"] == 7
    assert answer.json["lists"] == ["L1"]
    stored = org_row(services)
    assert services.box.decrypt(stored["destination_secret_enc"]) == CRM_SECRET
    assert services.box.decrypt(stored["webhook_secret_enc"]) == connected
    assert [m for m, p in loke.requests if "/webhooks/" in p] == ["PUT"]  # not subscribed again
    assert loke.secret_for(ORG) == connected


def test_get_never_returns_a_secret(
    client: FlaskClient, services: Services, crm: FakeCrm, connected: str
) -> None:
    stored = org_row(services)
    assert post_webhook(client, connected, created("C1")) == 202
    drain_inbox(services)
    answers = [
        put_org(client, {"destination": destination(crm)}),
        call(client, "GET", "/api/orgs"),
        call(client, "GET", f"/api/orgs/{ORG}"),
        call(client, "GET", f"/api/orgs/{ORG}/customers/C1"),
        call(client, "GET", "/api/dead-letters"),
        call(client, "POST", f"/api/orgs/{ORG}/subscription"),
    ]
    for answer in answers:
        assert answer.status_code == 200
        shown = answer.get_data(as_text=True)
        for secret in (CRM_SECRET, connected, *stored.values()):
            assert secret not in shown
    assert "secret" not in json.dumps(answers[2].json["destination"])


# -- customers ----------------------------------------------------------------------------------
def test_a_stored_customer_shows_profile_statistics_payments_and_delivery(
    client: FlaskClient, services: Services, connected: str
) -> None:
    customer = make_customer("C1", NOW, statistics=None)
    stats = {"pointsBalance": 5, "totalPointsEarned": 5, "lastPointsEarnedAt": NOW}
    for body in (
        customer_event("customer.created", ORG, customer),
        statistics_event(ORG, customer, stats),
        payment_event("completed", ORG, make_payment("P1", customer, NOW)),
    ):
        assert post_webhook(client, connected, body) == 202
    drain_inbox(services)

    view = call(client, "GET", f"/api/orgs/{ORG}/customers/C1")
    assert view.status_code == 200
    assert view.json["profile"]["email"] == customer["email"]
    assert view.json["partial"] is False
    assert view.json["statistics"]["totalPointsEarned"] == 5
    assert [p["paymentId"] for p in view.json["payments"]] == ["P1"]
    assert {(d["kind"], d["key"], d["pending"]) for d in view.json["delivery"]} == {
        ("contact", "C1", True),
        ("payment", "P1", True),
    }


def test_an_unknown_customer_or_organization_is_not_found(
    client: FlaskClient, connected: str
) -> None:
    for url in (f"/api/orgs/{ORG}/customers/nobody", "/api/orgs/nobody/customers/C1"):
        answer = call(client, "GET", url)
        assert answer.status_code == 404
        assert answer.json["error"]["code"] == "not_found"
    assert call(client, "GET", "/api/orgs/nobody").status_code == 404


# -- disconnecting and the subscription ---------------------------------------------------------
def test_delete_removes_the_subscription_and_webhooks_stop_at_once(
    client: FlaskClient, services: Services, loke: FakeLoke, connected: str
) -> None:
    assert post_webhook(client, connected, created("C1")) == 202  # the secret is now cached
    drain_inbox(services)
    answer = call(client, "DELETE", f"/api/orgs/{ORG}")
    assert answer.status_code == 200
    assert answer.json == {
        "status": "disconnected", "purged": False, "unsubscribed": True, "unsubscribeError": None
    }  # fmt: skip
    assert SUBSCRIPTION not in loke.subscriptions
    assert post_webhook(client, connected, created("C2")) == 404
    status = call(client, "GET", f"/api/orgs/{ORG}").json
    assert (status["connected"], status["subscription"]["status"]) == (False, "deleted")
    assert call(client, "GET", f"/api/orgs/{ORG}/customers/C1").status_code == 200


def test_delete_with_purge_removes_the_stored_customers(
    client: FlaskClient, services: Services, connected: str
) -> None:
    assert post_webhook(client, connected, created("C1")) == 202
    drain_inbox(services)
    answer = call(client, "DELETE", f"/api/orgs/{ORG}?purge=true")
    assert answer.status_code == 200
    assert answer.json["purged"] is True
    assert call(client, "GET", f"/api/orgs/{ORG}/customers/C1").status_code == 404
    assert call(client, "GET", f"/api/orgs/{ORG}").status_code == 404
    with services.db.engine.connect() as connection:
        for table in ("customers", "inbox", "outbox", "organizations"):
            assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0  # noqa: S608


def test_deleting_an_unknown_organization_is_not_found(client: FlaskClient) -> None:
    assert call(client, "DELETE", "/api/orgs/nobody").status_code == 404


def test_posting_the_subscription_puts_it_again_with_the_stored_secret(
    client: FlaskClient, loke: FakeLoke, connected: str
) -> None:
    loke.subscriptions.clear()  # drift: someone deleted it at LOKE
    answer = call(client, "POST", f"/api/orgs/{ORG}/subscription")
    assert answer.status_code == 200
    assert answer.json["status"] == "ok"
    assert loke.secret_for(ORG) == connected
    assert sorted(loke.subscriptions[SUBSCRIPTION]["events"]) == EVENTS
    assert post_webhook(client, connected, created("C1")) == 202


def test_posting_the_subscription_of_an_unknown_organization_is_not_found(
    client: FlaskClient, loke: FakeLoke
) -> None:
    assert call(client, "POST", "/api/orgs/nobody/subscription").status_code == 404
    assert loke.subscriptions == {}


# -- secrets at rest ----------------------------------------------------------------------------
def test_stored_secrets_are_encrypted_at_rest(services: Services, connected: str) -> None:
    stored = org_row(services)
    assert connected not in stored["webhook_secret_enc"]
    assert CRM_SECRET not in stored["destination_secret_enc"]
    box = SecretBox(SECRET_KEY)
    assert box.decrypt(stored["webhook_secret_enc"]) == connected
    assert box.decrypt(stored["destination_secret_enc"]) == CRM_SECRET


def test_a_wrong_secret_key_fails_loudly(
    tmp_path: Path, loke: FakeLoke, services: Services, connected: str
) -> None:
    stored = org_row(services)
    with pytest.raises(SecretKeyMismatch):
        SecretBox("another-secret-key").decrypt(stored["destination_secret_enc"])
    # Another process on the same database with the wrong key refuses to send anything.
    wrong = create_app(
        make_settings(tmp_path, loke, secret_key="another-secret-key"), RecordingDispatcher()
    )
    try:
        with pytest.raises(SecretKeyMismatch, match="SECRET_KEY"):
            flush_org(services_of(wrong), ORG)
    finally:
        services_of(wrong).db.dispose()


# -- health -------------------------------------------------------------------------------------
def test_healthz_answers_without_credentials(client: FlaskClient) -> None:
    answer: Any = client.get("/healthz")
    assert (answer.status_code, answer.json) == (200, {"status": "ok"})


def test_readyz_is_ready_when_database_and_broker_answer(client: FlaskClient) -> None:
    answer: Any = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_is_unavailable_when_the_broker_does_not_answer(
    client: FlaskClient, dispatcher: RecordingDispatcher
) -> None:
    dispatcher.fail_with = ConnectionError("broker down")
    answer: Any = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json["status"] == "unavailable"
    assert answer.json["checks"]["broker"] == "unavailable"
