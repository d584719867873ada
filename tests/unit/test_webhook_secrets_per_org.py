"""One organization's webhook secret never signs for another: not on the first request, and not
once the receiver has cached both organizations' secrets (app/orgs/webhook_secrets.py)."""

from __future__ import annotations

import datetime as dt
import json

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.store.models import InboxEvent
from devtools.crm import FakeCrm
from tests.conftest import AUTH, destination, services_of
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, sign

ORG_A, ORG_B = "org-secret-a", "org-secret-b"
NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def event_of(org_id: str, customer_id: str) -> bytes:
    return json.dumps(customer_event("customer.updated", org_id, make_customer(customer_id, NOW)))\
        .encode()  # fmt: skip


def post(client: FlaskClient, org_id: str, body: bytes, secret: str) -> int:
    headers = {"Content-Type": "application/json", "X-Event-Signature": sign(body, secret)}
    return client.post(f"/webhooks/loke/{org_id}", data=body, headers=headers).status_code


def test_one_organizations_secret_never_signs_for_another_even_once_both_are_cached(
    app: Flask, client: FlaskClient, loke: FakeLoke, crm: FakeCrm
) -> None:
    for org_id in (ORG_A, ORG_B):
        loke.add_org(org_id)
        answer = client.put(f"/api/orgs/{org_id}", json={"destination": destination(crm)},
                            headers=AUTH)  # fmt: skip
        assert answer.status_code == 201, answer.json
    secret_a, secret_b = loke.secret_for(ORG_A), loke.secret_for(ORG_B)
    assert secret_a != secret_b

    # Before anything is cached: the first request each organization sees is a forgery.
    assert post(client, ORG_B, event_of(ORG_B, "F1"), secret_a) == 401
    assert post(client, ORG_A, event_of(ORG_A, "F2"), secret_b) == 401
    # Both secrets cached now, by genuine webhooks...
    assert post(client, ORG_A, event_of(ORG_A, "A1"), secret_a) == 202
    assert post(client, ORG_B, event_of(ORG_B, "B1"), secret_b) == 202
    # ...and still neither signs for the other, in either direction.
    assert post(client, ORG_B, event_of(ORG_B, "F3"), secret_a) == 401
    assert post(client, ORG_A, event_of(ORG_A, "F4"), secret_b) == 401
    # A's secret on a body about B, sent to A's URL, is refused as well (nothing of B stored).
    assert post(client, ORG_A, event_of(ORG_B, "F5"), secret_a) == 400

    with services_of(app).db.transaction() as session:
        kept = sorted(
            (row.org_id, json.loads(row.body)["customer"]["id"])
            for row in session.scalars(select(InboxEvent))
        )
    assert kept == [(ORG_A, "A1"), (ORG_B, "B1")]
