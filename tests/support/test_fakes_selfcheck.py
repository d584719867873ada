"""Fast checks that the fakes themselves behave, so a failing service test blames the service."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from devtools.crm import FakeCrm, signature

from . import FakeServer, Request, Response, json_response
from .fake_loke import (
    FakeLoke,
    customer_event,
    make_customer,
    make_payment,
    payment_event,
    post_webhook,
    sign,
    statistics_event,
)

pytestmark = pytest.mark.timeout(30)

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
SECRET = "crm-secret"


@pytest.fixture
def loke() -> Iterator[FakeLoke]:
    with FakeLoke("client", "s3cret") as fake:
        fake.add_org("org-1", "Cafe One")
        yield fake


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    with FakeCrm(SECRET) as fake:
        yield fake


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def _token(loke: FakeLoke, http: requests.Session) -> str:
    form = {"grant_type": "client_credentials", "client_id": "client", "client_secret": "s3cret"}
    answer = http.post(f"{loke.url}/token", data=form, timeout=5)
    assert answer.status_code == 200
    assert answer.json()["token_type"] == "Bearer"
    return str(answer.json()["access_token"])


def test_token_flow_and_expiry(loke: FakeLoke, http: requests.Session) -> None:
    config = http.get(f"{loke.url}/.well-known/openid-configuration", timeout=5).json()
    assert config["token_endpoint"] == f"{loke.url}/token"
    assert http.get(f"{loke.url}/organizations", timeout=5).status_code == 401
    wrong = {"grant_type": "client_credentials", "client_id": "client", "client_secret": "no"}
    refused = http.post(f"{loke.url}/token", data=wrong, timeout=5)
    assert (refused.status_code, refused.json()) == (401, {"error": "invalid_client"})
    basic = http.post(
        config["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=("client", "s3cret"),
        timeout=5,
    )
    assert basic.status_code == 200
    auth = {"Authorization": f"Bearer {_token(loke, http)}"}
    orgs = http.get(f"{loke.url}/organizations", headers=auth, timeout=5)
    assert orgs.json() == [{"id": "org-1", "name": "Cafe One"}]
    assert "X-Next-Page" not in orgs.headers
    loke.expire_all_tokens()
    expired = http.get(f"{loke.url}/organizations", headers=auth, timeout=5)
    assert expired.status_code == 401
    assert expired.json() == {"message": "Unauthorized", "code": "unauthorized"}
    assert loke.token_requests == 3


@pytest.mark.parametrize("relative", [False, True])
def test_paging_walks_every_customer(relative: bool, http: requests.Session) -> None:
    with FakeLoke("client", "s3cret", relative_next_page=relative) as loke:
        customers = [make_customer(f"C{i:05d}", T0 + timedelta(minutes=i)) for i in range(2500)]
        loke.set_customers("org-1", reversed(customers))
        auth = {"Authorization": f"Bearer {_token(loke, http)}"}
        seen: list[str] = []
        url: str | None = f"{loke.url}/organizations/org-1/customers?sort=updated"
        pages = 0
        while url:
            answer = http.get(url, headers=auth, timeout=5)
            assert answer.status_code == 200
            seen += [c["id"] for c in answer.json()]
            pages += 1
            next_page = answer.headers.get("X-Next-Page")
            assert next_page is None or next_page.startswith("/") == relative
            url = urljoin(loke.url, next_page) if next_page else None
        assert pages == 3
        assert seen == [c["id"] for c in reversed(customers)]  # newest updatedAt first
        created = http.get(f"{loke.url}/organizations/org-1/customers", headers=auth, timeout=5)
        assert [c["id"] for c in created.json()[:2]] == ["C00000", "C00001"]
        one = http.get(f"{loke.url}/organizations/org-1/customers/C00042", headers=auth, timeout=5)
        assert one.json() == customers[42]
        missing = http.get(
            f"{loke.url}/organizations/org-1/customers/nope", headers=auth, timeout=5
        )
        assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


def test_subscription_upsert_get_delete(loke: FakeLoke, http: requests.Session) -> None:
    auth = {"Authorization": f"Bearer {_token(loke, http)}"}
    hook = f"{loke.url}/organizations/org-1/webhooks/sync"
    body = {"url": "http://svc/webhooks/loke/org-1", "events": ["customer.updated"], "secret": "a"}
    first = http.put(hook, json=body, headers=auth, timeout=5).json()
    again = http.put(hook, json={**body, "secret": "b"}, headers=auth, timeout=5).json()
    assert first == again
    assert "secret" not in first
    assert first["ref"] == "sync"
    assert loke.secret_for("org-1") == "b"
    listed = http.get(f"{loke.url}/organizations/org-1/webhooks", headers=auth, timeout=5)
    assert listed.json() == [first]
    assert http.delete(hook, headers=auth, timeout=5).status_code == 204
    gone = http.delete(hook, headers=auth, timeout=5)
    assert (gone.status_code, gone.json()["code"]) == (404, "not_found")
    unknown = http.put(
        f"{loke.url}/organizations/x/webhooks/sync", json=body, headers=auth, timeout=5
    )
    assert unknown.status_code == 404
    assert loke.subscriptions == {}


def test_api_fault_injection(loke: FakeLoke, http: requests.Session) -> None:
    auth = {"Authorization": f"Bearer {_token(loke, http)}"}
    loke.fail_next(1, status=503, retry_after="2")
    failed = http.get(f"{loke.url}/organizations", headers=auth, timeout=5)
    assert (failed.status_code, failed.headers["Retry-After"]) == (503, "2")
    loke.delay_next(1, 0.5)
    with pytest.raises(requests.Timeout):
        http.get(f"{loke.url}/organizations", headers=auth, timeout=0.1)
    assert http.get(f"{loke.url}/organizations", headers=auth, timeout=5).status_code == 200
    assert loke.requests[-1] == ("GET", "/organizations")


def _batch(org: str, *ops: dict[str, Any]) -> dict[str, Any]:
    return {
        "batchId": str(uuid.uuid4()),
        "organizationId": org,
        "sentAt": "x",
        "operations": list(ops),
    }


def _contact(customer_id: str, updated_at: datetime, earned: int = 0) -> dict[str, Any]:
    customer = make_customer(customer_id, updated_at, statistics={"totalPointsEarned": earned})
    statistics = customer.pop("statistics")
    contact = {k: v for k, v in customer.items() if k != "id"}
    return {
        "type": "contact.upsert",
        "customerId": customer_id,
        "contact": contact,
        "statistics": statistics,
    }


def _send(crm: FakeCrm, batch: dict[str, Any], secret: str = SECRET) -> requests.Response:
    raw = json.dumps(batch).encode()
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": batch["batchId"],
        "X-Signature": signature(raw, secret),
    }
    return requests.post(f"{crm.url}/crm/batches", data=raw, headers=headers, timeout=5)


def test_crm_verifies_signatures_and_records(crm: FakeCrm) -> None:
    batch = _batch(
        "org-1",
        _contact("C1", T0),
        {"type": "list.add", "listId": "L1", "listName": "VIP", "customerId": "C1"},
        {"type": "list.add", "listId": "L1", "listName": "VIP", "customerId": "C2"},
        {"type": "list.remove", "listId": "L1", "customerId": "C2"},
    )
    assert _send(crm, batch, secret="wrong").status_code == 401
    assert crm.bad_signatures == 1
    assert crm.batches == []
    assert _send(crm, batch).status_code == 200
    assert _send(crm, batch).json() == {"status": "duplicate"}
    assert crm.contacts[("org-1", "C1")]["contact"]["updatedAt"] == "2025-03-01T09:30:00.000Z"
    assert crm.list_members == {("org-1", "L1"): {"C1"}}
    assert (crm.operation_count, crm.batches, crm.duplicate_batch_ids) == (
        4,
        [batch],
        [batch["batchId"]],
    )
    assert [status for _, status, _ in crm.answered] == [401, 200, 200]
    assert crm.violations() == []


def test_crm_detects_regressions(crm: FakeCrm) -> None:
    assert _send(crm, _batch("org-1", _contact("C1", T0, earned=10))).status_code == 200
    assert _send(crm, _batch("org-1", _contact("C1", T0 - timedelta(seconds=1)))).status_code == 200
    assert _send(crm, _batch("org-1", _contact("C1", T0, earned=5))).status_code == 200
    payment = {
        "type": "payment.upsert",
        "paymentId": "P1",
        "customerId": "C1",
        "total": 100,
        "currency": "AUD",
        "completedAt": "x",
        "locationId": None,
        "items": [],
    }
    refunded = {**payment, "status": "refunded", "refundedAt": "y"}
    assert _send(crm, _batch("org-1", refunded)).status_code == 200
    completed = {**payment, "status": "completed", "refundedAt": None}
    assert _send(crm, _batch("org-1", completed)).status_code == 200
    assert len(crm.regressions) == 4, crm.regressions  # updatedAt, stats, stats, payment
    assert crm.contacts[("org-1", "C1")]["statistics"]["totalPointsEarned"] == 5  # last wins
    assert crm.payments[("org-1", "P1")]["status"] == "completed"
    crm.reset()
    assert crm.violations() == []


def test_crm_detects_overlaps(crm: FakeCrm) -> None:
    crm.delay(0.3)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(_send, crm, _batch("org-1", _contact("C1", T0)))
        assert crm.wait_for(lambda c: bool(c.in_flight()), timeout=5)
        second = pool.submit(_send, crm, _batch("org-1", _contact("C1", T0 + timedelta(1))))
        assert (first.result().status_code, second.result().status_code) == (200, 200)
    assert len(crm.overlaps) == 1, crm.overlaps
    crm.reset()
    crm.delay(0.05)
    _send(crm, _batch("org-1", _contact("C1", T0)))
    _send(crm, _batch("org-1", _contact("C1", T0)))
    assert crm.overlaps == []


def test_crm_programmed_failures(crm: FakeCrm) -> None:
    crm.fail_next(1)
    batch = _batch("org-1", _contact("C1", T0))
    throttled = _send(crm, batch)
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "1")
    assert _send(crm, batch).status_code == 200
    crm.reject_customer("C9", status=422)
    rejected = _send(crm, _batch("org-1", _contact("C9", T0)))
    assert (rejected.status_code, rejected.json()["error"]["code"]) == (422, "rejected")
    crm.fail_for(0.2)
    assert _send(crm, _batch("org-1", _contact("C2", T0))).status_code == 503
    assert crm.wait_for(lambda c: not c.failing(), timeout=5)
    assert _send(crm, _batch("org-1")).status_code == 200
    assert crm.batches[0]["batchId"] == batch["batchId"]
    malformed = _send(
        crm, {"batchId": "b", "organizationId": "o", "sentAt": "x", "operations": [{}]}
    )
    assert malformed.status_code == 400
    assert crm.protocol_errors


def test_webhook_helpers_sign_and_shape() -> None:
    customer = make_customer("C1", T0, statistics={"lastSpentAt": T0})
    assert customer["statistics"]["lastSpentAt"] == "2025-03-01T09:30:00.000Z"
    assert customer_event("updated", "o", customer)["event"] == "customer.updated"
    stats = statistics_event("o", customer, customer["statistics"])
    assert set(stats["customer"]) == {"id", "email", "firstName", "lastName", "phoneNumber"}
    refund = payment_event("refunded", "o", make_payment("P1", customer, T0, refundedAt=T0))
    assert (refund["event"], refund["payment"]["customer"]["id"]) == ("payment.refunded", "C1")
    assert sign(b"{}", "k") == signature(b"{}", "k")
    with _Echo() as echo:
        status, answer = post_webhook(f"{echo.url}/webhooks/loke/o", {"a": 1}, "k")
        unsigned = post_webhook(echo.url, b"[1]", None)
    assert (status, answer["body"], answer["signature"]) == (200, '{"a":1}', sign(b'{"a":1}', "k"))
    assert unsigned == (200, {"body": "[1]", "signature": None})


class _Echo(FakeServer):
    """Answers with what it received, to see exactly what post_webhook sends."""

    def handle(self, request: Request) -> Response:
        signed = request.header("x-event-signature")
        return json_response(200, {"body": request.body.decode(), "signature": signed})
