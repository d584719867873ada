"""Hostile input, generated: webhook bodies, headers and signatures, and admin API bodies.

Whatever arrives, the answer is a clear 4xx or a 202, never a 5xx; whatever was accepted, the
worker applies or dead-letters it without crashing, and nothing stays stuck in the inbox. On both
stores: PostgreSQL enforces the columns' lengths where SQLite does not (a long X-Request-Id once
made every retry of a webhook a 503 there). Each test sets up its own service and database.
"""

from __future__ import annotations

import datetime as dt
import json
import string
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.core.config import Settings
from app.factory import create_app
from app.ingest.apply import drain_inbox
from app.store.migrate import upgrade
from app.store.models import DeadLetter, InboxEvent
from tests.conftest import AUTH, CRM_SECRET, RecordingDispatcher, make_settings, services_of
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, sign
from tests.support.processes import fresh_postgres_database

ORG = "org-hostile"
CASES = 5_000  # per store
ADMIN_CASES = 1_000  # per store
DRAIN_CASES = 600  # per store: webhooks that the worker then applies, before it is checked

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=4),
    max_leaves=20,
)  # fmt: skip
odd_dates = st.sampled_from(
    ["2026-13-01T00:00:00Z", "yesterday", "0001-01-01T00:00:00+01:00", "1700000000", "",
     "2026-01-01", "2026-01-01T25:61:00Z", "9999-12-31T23:59:59-05:00", "2026-06-01 10:00"]
)  # fmt: skip
EVENT_TYPES = ["customer.created", "customer.updated", "customer.updated-statistics",
               "payment.completed", "payment.refunded", "order.created", "x" * 200]  # fmt: skip


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A real event shape with some fields replaced by anything at all."""
    customer = make_customer(draw(st.text(min_size=0, max_size=80)), make_now())
    body = customer_event("customer.updated", ORG, customer)
    body["event"] = draw(st.sampled_from(EVENT_TYPES))
    for field in draw(st.lists(st.sampled_from(sorted(customer)), max_size=4)):
        customer[field] = draw(json_values | odd_dates | st.text(max_size=3000))
    if draw(st.booleans()):
        body["statistics"] = draw(json_values)
    if draw(st.booleans()):
        body["payment"] = draw(json_values)
    return body


def make_now() -> dt.datetime:
    return dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def nested(depth: int) -> bytes:
    return (b'{"a":' * depth) + b"1" + (b"}" * depth)


bodies = st.one_of(
    mutated_events().map(lambda b: json.dumps(b).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.integers(min_value=100, max_value=200_000).map(nested),
    st.text(max_size=200).map(lambda t: t.encode("utf-16")),
    st.just(b'{"event": "customer.created", "organization": {"id": "org-hostile"}, "x": "\xff"}'),
)


# Header values a client can send (HTTP has no line breaks inside one).
header_text = st.text(max_size=300).filter(lambda t: "\r" not in t and "\n" not in t)
request_ids = st.one_of(
    st.none(),
    st.just(""),
    header_text,
    st.text(alphabet=string.ascii_letters + string.digits + "-_.:;=", min_size=60, max_size=300),
    st.sampled_from(["über-ünïcödé", "x" * 64, "x" * 65, "\x00" * 8, " ", "id\tid", "\x7f"]),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "text/plain", "application/json; charset=utf-16",
                     "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                     "application/json; charset=\u00e9", "", ";;;", "*/*"]),
    header_text,
)  # fmt: skip
signings = st.sampled_from(
    ["valid", "valid", "valid", "wrong", "missing", "garbage", "non_ascii", "wrong_digest",
     "any_text"]
)  # fmt: skip


@st.composite
def webhook_headers(draw: st.DrawFn, body: bytes, secret: str) -> dict[str, str]:
    """Headers as anyone might send them: a signature of any kind, an X-Request-Id of any
    length or script, any Content-Type or none."""
    headers: dict[str, str] = {}
    content_type = draw(content_types)
    if content_type is not None:
        headers["Content-Type"] = content_type
    request_id = draw(request_ids)
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    signing = draw(signings)
    if signing == "valid":
        headers["X-Event-Signature"] = sign(body, secret)
    elif signing == "wrong":
        headers["X-Event-Signature"] = sign(body, secret + "!")
    elif signing == "garbage":
        headers["X-Event-Signature"] = "sha256=" + "zz" * 40
    elif signing == "non_ascii":
        headers["X-Event-Signature"] = "sha256=" + draw(st.text(min_size=1, max_size=70).filter(
            lambda t: not t.isascii() and "\r" not in t and "\n" not in t))  # fmt: skip
    elif signing == "wrong_digest":
        headers["X-Event-Signature"] = "sha256=" + draw(
            st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
        )
    elif signing == "any_text":
        headers["X-Event-Signature"] = draw(header_text)
    return headers


@pytest.fixture(params=["sqlite", "postgresql"])
def hostile(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Flask, str]]:
    """A service of its own, on each store, with ORG connected: (the app, ORG's secret)."""
    with FakeLoke("crm-addon", "crm-addon-secret") as loke:
        if request.param == "sqlite":
            with connected(make_settings(tmp_path, loke), loke) as found:
                yield found
            return
        with fresh_postgres_database() as url:
            database_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
            with connected(make_settings(tmp_path, loke, database_url=database_url), loke) as found:
                yield found


@contextmanager
def connected(settings_: Settings, loke: FakeLoke) -> Iterator[tuple[Flask, str]]:
    upgrade(settings_.sqlalchemy_url)
    flask_app = create_app(settings_, RecordingDispatcher())
    loke.add_org(ORG)
    body = {"destination": {"type": "http", "url": "http://127.0.0.1:9/", "secret": CRM_SECRET}}
    answer = flask_app.test_client().put(f"/api/orgs/{ORG}", json=body, headers=AUTH)
    assert answer.status_code == 201
    try:
        yield flask_app, loke.secret_for(ORG)
    finally:
        services_of(flask_app).db.dispose()


def check_answer(answer: Any) -> None:
    assert answer.status_code in {202, 400, 401, 404, 413}, (answer.status_code, answer.data)
    payload = answer.get_json()
    if answer.status_code == 202:
        assert payload["status"] in {"accepted", "duplicate", "ignored"}
    else:
        assert set(payload["error"]) == {"code", "message"}
        assert payload["error"]["message"]


@settings(max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=bodies,
    org=st.sampled_from([ORG, ORG, ORG, "someone-else", "%00", "a" * 300]),
    data=st.data(),
)
def test_no_webhook_input_gets_a_5xx_and_every_refusal_says_why(
    hostile: tuple[Flask, str], body: bytes, org: str, data: st.DataObject
) -> None:
    app, secret = hostile
    client: FlaskClient = app.test_client()
    headers = data.draw(webhook_headers(body, secret))
    check_answer(client.post(f"/webhooks/loke/{org}", data=body, headers=headers))


@settings(max_examples=ADMIN_CASES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "destination": json_values | st.fixed_dictionaries(
                    {"type": st.sampled_from(["http", "hubspot", 7])},
                    optional={"url": json_values | st.text(max_size=50),
                              "batchSize": json_values, "maxRequestsPerSecond": json_values,
                              "secret": json_values | st.text(max_size=600)},
                ),
                "lists": json_values | st.lists(st.text(max_size=70), max_size=5),
                "listSyncIntervalSeconds": json_values,
                "name": json_values,
            },
        ),
    )
)  # fmt: skip
def test_no_admin_body_gets_a_5xx(hostile: tuple[Flask, str], body: Any) -> None:
    app, _ = hostile
    answer = app.test_client().put(f"/api/orgs/{ORG}", json=body, headers=AUTH)
    if answer.status_code == 503:
        # A well-formed CRM destination whose CRM cannot be reached to check it (a HubSpot
        # token with no HubSpot here): refused, nothing saved, and not our fault.
        assert answer.get_json()["error"]["code"] == "destination_unavailable"
        return
    assert answer.status_code in {200, 400}, (answer.status_code, answer.data)
    if answer.status_code == 400:
        assert answer.get_json()["error"]["message"]


def test_every_acknowledged_webhook_is_applied_ignored_or_dead_lettered(
    hostile: tuple[Flask, str],
) -> None:
    app, secret = hostile
    client: FlaskClient = app.test_client()
    acknowledged: Counter[str] = Counter()

    @settings(max_examples=DRAIN_CASES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=mutated_events().map(lambda b: json.dumps(b).encode()), data=st.data())
    def post_one(body: bytes, data: st.DataObject) -> None:
        headers = data.draw(webhook_headers(body, secret))
        headers["X-Event-Signature"] = sign(body, secret)  # every one signed: all are kept
        answer = client.post(f"/webhooks/loke/{ORG}", data=body, headers=headers)
        check_answer(answer)
        if answer.status_code == 202:
            acknowledged[answer.get_json()["status"]] += 1

    post_one()
    services = services_of(app)
    for _ in range(1000):
        result = drain_inbox(services)
        if not result.more:
            break
    with services.db.transaction() as session:
        by_status = dict(
            session.execute(
                select(InboxEvent.status, func.count()).group_by(InboxEvent.status)
            ).all()
        )
        letters = session.scalar(select(func.count()).select_from(DeadLetter))
    # Nothing acknowledged was lost: every 202 that was not a duplicate is a row...
    assert sum(by_status.values()) == acknowledged["accepted"] + acknowledged["ignored"]
    assert by_status.get("ignored", 0) == acknowledged["ignored"]
    assert by_status.get("pending", 0) == 0, by_status  # ...none poisoned or stuck...
    assert by_status.get("failed", 0) == letters  # ...and every refusal says why
    assert acknowledged["accepted"] > 100, acknowledged
