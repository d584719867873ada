"""The webhook receiver, row by row of the contract's table, through Flask's test client."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from app.store.models import InboxEvent
from devtools.crm import FakeCrm
from tests.conftest import AUTH, RecordingDispatcher, destination, services_of
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, sign

ORG = "org-receiver"
NOW = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def secret(client: FlaskClient, loke: FakeLoke, crm: FakeCrm) -> str:
    loke.add_org(ORG)
    answer = client.put(f"/api/orgs/{ORG}", json={"destination": destination(crm)}, headers=AUTH)
    assert answer.status_code == 201, answer.json
    return loke.secret_for(ORG)


def raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def post(client: FlaskClient, body: bytes, signature: str | None, org: str = ORG) -> Any:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Event-Signature"] = signature
    return client.post(f"/webhooks/loke/{org}", data=body, headers=headers)


def event_body() -> bytes:
    return raw(customer_event("customer.created", ORG, make_customer("C1", NOW)))


def inbox_rows(app: Flask) -> list[InboxEvent]:
    with services_of(app).db.transaction() as session:
        return list(session.scalars(select(InboxEvent).order_by(InboxEvent.id)))


def test_a_signed_event_is_stored_then_acknowledged_then_enqueued(
    app: Flask, client: FlaskClient, secret: str, dispatcher: RecordingDispatcher
) -> None:
    body = event_body()
    answer = post(client, body, sign(body, secret))
    assert answer.status_code == 202
    assert answer.json == {"status": "accepted"}
    [row] = inbox_rows(app)
    assert (row.org_id, row.event_type, row.status) == (ORG, "customer.created", "pending")
    assert row.body == body.decode()
    assert app.extensions["background_kicks"].wait_idle(5)
    assert "events.drain" in dispatcher.names()


def test_the_same_body_again_is_a_duplicate_and_stored_once(
    app: Flask, client: FlaskClient, secret: str
) -> None:
    body = event_body()
    assert post(client, body, sign(body, secret)).json == {"status": "accepted"}
    again = post(client, body, sign(body, secret))
    assert again.status_code == 202
    assert again.json == {"status": "duplicate"}
    assert len(inbox_rows(app)) == 1


def test_an_unknown_event_type_is_kept_for_audit_and_ignored(
    app: Flask, client: FlaskClient, secret: str, dispatcher: RecordingDispatcher
) -> None:
    sent_before = len(dispatcher.sent)
    for event in ("order.completed", "loyalty.something-new"):
        body = raw({"event": event, "order": {"id": "o1"}, "organization": {"id": ORG}})
        answer = post(client, body, sign(body, secret))
        assert answer.status_code == 202
        assert answer.json == {"status": "ignored"}
    assert [r.status for r in inbox_rows(app)] == ["ignored", "ignored"]
    assert len(dispatcher.sent) == sent_before


@pytest.mark.parametrize("signature", [None, "", "sha256=", "sha256=00ff", "md5=abc"])
def test_a_missing_or_wrong_signature_is_refused_and_nothing_is_stored(
    app: Flask, client: FlaskClient, secret: str, signature: str | None
) -> None:
    answer = post(client, event_body(), signature)
    assert answer.status_code == 401
    assert answer.json["error"]["code"] == "bad_signature"
    assert inbox_rows(app) == []


def test_a_signature_made_with_another_secret_is_refused(
    app: Flask, client: FlaskClient, secret: str
) -> None:
    body = event_body()
    assert post(client, body, sign(body, secret + "x")).status_code == 401
    assert post(client, body + b" ", sign(body, secret)).status_code == 401
    assert inbox_rows(app) == []


def test_an_organization_that_is_not_connected_is_not_found(
    app: Flask, client: FlaskClient, secret: str
) -> None:
    body = raw(customer_event("customer.created", "other-org", make_customer("C1", NOW)))
    answer = post(client, body, sign(body, secret), org="other-org")
    assert answer.status_code == 404
    assert answer.json["error"]["code"] == "org_not_connected"
    assert inbox_rows(app) == []


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"organization": {"id": "org-receiver"}}', "no event"),
        (b'{"event": 5, "organization": {"id": "org-receiver"}}', "no event"),
        (b'{"event": "customer.created", "organization": {"id": "someone-else"}}', "match"),
        (b'{"event": "customer.created"}', "match"),
    ],
)
def test_a_signed_body_that_is_not_an_event_for_this_org_is_a_bad_request(
    app: Flask, client: FlaskClient, secret: str, body: bytes, why: str
) -> None:
    answer = post(client, body, sign(body, secret))
    assert answer.status_code == 400
    assert answer.json["error"]["code"] == "invalid_body"
    assert why in answer.json["error"]["message"]
    assert inbox_rows(app) == []


def test_a_body_over_one_mebibyte_is_too_large(
    app: Flask, client: FlaskClient, secret: str
) -> None:
    body = raw({"event": "customer.created", "organization": {"id": ORG}, "pad": "x" * 2**20})
    answer = post(client, body, sign(body, secret))
    assert answer.status_code == 413
    assert "error" in answer.json
    assert inbox_rows(app) == []


def test_when_nothing_can_be_stored_the_answer_is_503(
    app: Flask, client: FlaskClient, secret: str
) -> None:
    body = event_body()
    post(client, event_body(), "warm the secret cache")
    with services_of(app).db.engine.begin() as connection:
        connection.execute(text("ALTER TABLE inbox RENAME TO inbox_gone"))
    answer = post(client, body, sign(body, secret))
    assert answer.status_code == 503
    assert answer.json["error"]["code"] == "unavailable"


def test_when_the_queue_is_down_events_are_kept_answered_503_and_enqueued_once_it_is_back(
    app: Flask, client: FlaskClient, secret: str, dispatcher: RecordingDispatcher
) -> None:
    kicks = app.extensions["background_kicks"]
    dispatcher.fail_with = ConnectionError("broker down")
    first, second = event_body(), raw(customer_event("customer.created", ORG, make_customer(
        "C2", NOW)))  # fmt: skip
    # The first is stored and acknowledged: its kick fails in the background...
    assert post(client, first, sign(first, secret)).status_code == 202
    assert not kicks.wait_idle(0.5)
    assert not kicks.healthy
    # ...from then on the receiver says the queue is down (after storing, so nothing is lost).
    assert post(client, second, sign(second, secret)).status_code == 503
    assert [r.status for r in inbox_rows(app)] == ["pending", "pending"]
    assert post(client, second, sign(second, secret)).json == {"status": "duplicate"}
    dispatcher.fail_with = None  # the queue is back: the held kick goes out
    assert kicks.wait_idle(5)
    assert kicks.healthy
    assert "events.drain" in dispatcher.names()


def test_errors_have_one_shape(client: FlaskClient, secret: str) -> None:
    answer = post(client, b"{}", None)
    assert set(answer.json) == {"error"}
    assert set(answer.json["error"]) == {"code", "message"}
