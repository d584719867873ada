"""Nothing about a webhook's headers, or an event name, turns an acceptable webhook into a 5xx.

On both stores: SQLite stores a value longer than its column, PostgreSQL refuses it, and the
receiver reported that as "database unavailable" (503) on every retry until LOKE gave up.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.core.config import Settings
from app.store.models import InboxEvent
from devtools.crm import FakeCrm
from tests.conftest import AUTH, destination, services_of
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, sign

ORG = "org-headers"
NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
REQUEST_ID_COLUMN = 64


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store  # only PostgreSQL enforces the columns' lengths


@pytest.fixture
def secret(client: FlaskClient, loke: FakeLoke, crm: FakeCrm) -> str:
    loke.add_org(ORG)
    answer = client.put(f"/api/orgs/{ORG}", json={"destination": destination(crm)}, headers=AUTH)
    assert answer.status_code == 201, answer.json
    return loke.secret_for(ORG)


def customer_body(customer_id: str = "H1") -> bytes:
    body = customer_event("customer.created", ORG, make_customer(customer_id, NOW))
    return json.dumps(body).encode()


def post(client: FlaskClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(f"/webhooks/loke/{ORG}", data=body, headers=headers)


def stored(app: Flask) -> list[InboxEvent]:
    with services_of(app).db.transaction() as session:
        return list(session.scalars(select(InboxEvent).order_by(InboxEvent.id)))


@pytest.mark.parametrize(
    "request_id",
    ["r" * 200, "proxy-" + "0123456789abcdef" * 16, "über-" * 20, "id with spaces\tand tab",
     "x" * 64 + "é", "\x7f" * 3],
)  # fmt: skip
def test_an_odd_or_long_request_id_never_loses_the_webhook(
    app: Flask, client: FlaskClient, secret: str, request_id: str
) -> None:
    body = customer_body()
    headers = {"X-Event-Signature": sign(body, secret), "X-Request-Id": request_id}
    answer = post(client, body, headers)
    assert answer.status_code == 202, answer.json
    assert answer.json == {"status": "accepted"}
    [row] = stored(app)
    assert row.status == "pending"
    # The id kept is one a log line and a header can carry, and the answer says which it is.
    assert row.request_id == answer.headers["X-Request-Id"]
    assert row.request_id is not None
    assert 0 < len(row.request_id) <= REQUEST_ID_COLUMN
    assert all("!" <= c <= "~" for c in row.request_id)


def test_a_request_id_that_fits_is_kept_as_it_is(
    app: Flask, client: FlaskClient, secret: str
) -> None:
    body = customer_body()
    request_id = "Root=1-67891233-abcdef012345678912345678;Sampled=1"
    answer = post(client, body, {"X-Event-Signature": sign(body, secret),
                                 "X-Request-Id": request_id})  # fmt: skip
    assert answer.status_code == 202
    assert [row.request_id for row in stored(app)] == [request_id]


def test_a_long_request_id_keeps_its_beginning_so_the_proxy_logs_still_lead_here(
    app: Flask, client: FlaskClient, secret: str
) -> None:
    body = customer_body()
    request_id = "edge-7f3a9c" + "-hop" * 60
    answer = post(client, body, {"X-Event-Signature": sign(body, secret),
                                 "X-Request-Id": request_id})  # fmt: skip
    assert answer.status_code == 202
    [row] = stored(app)
    assert row.request_id is not None
    assert row.request_id.startswith("edge-7f3a9c-hop")


@pytest.mark.parametrize(
    "event",
    ["x" * 200, "loyalty." + "ü" * 100, "customer.created\x00", "odd\ud800surrogate",
     "\x00" * 70],
)  # fmt: skip
def test_an_event_name_no_column_can_hold_is_stored_and_ignored_like_any_unknown_event(
    app: Flask, client: FlaskClient, secret: str, event: str
) -> None:
    body = json.dumps({"event": event, "organization": {"id": ORG}}).encode()
    answer = post(client, body, {"X-Event-Signature": sign(body, secret)})
    assert answer.status_code == 202, answer.json
    assert answer.json == {"status": "ignored"}
    [row] = stored(app)
    assert row.status == "ignored"
    assert row.body == body.decode()  # the body itself is kept exactly, for audit
    assert 0 < len(row.event_type) <= 64
    assert "\x00" not in row.event_type


@pytest.mark.parametrize(
    "signature",
    ["sha256=é", "sha256=" + "ü" * 64, "sha256=\uff21\uff22", "é", "sha256=\x00",
     "sha256=" + "0" * 64 + "é"],
)  # fmt: skip
def test_a_non_ascii_signature_is_refused_not_a_crash(
    app: Flask, client: FlaskClient, secret: str, signature: str
) -> None:
    answer = post(client, customer_body(), {"X-Event-Signature": signature})
    assert answer.status_code == 401, answer.data
    assert answer.json["error"]["code"] == "bad_signature"
    assert stored(app) == []


def test_a_signature_in_capitals_or_with_spaces_around_it_still_counts(
    app: Flask, client: FlaskClient, secret: str
) -> None:
    body = customer_body()
    signature = "sha256=" + sign(body, secret)[len("sha256=") :].upper() + " "
    assert post(client, body, {"X-Event-Signature": signature}).status_code == 202
