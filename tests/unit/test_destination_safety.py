"""Where a destination's batches may go: never where a redirect points, and in production never
to loopback, link-local, private or other non-public addresses (when connecting, before each
batch, and on the socket itself, whatever the DNS answered a moment before)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.core.config import Settings
from app.core.services import Services
from app.delivery.destinations import addresses
from app.delivery.sender import flush_org
from app.ingest import inbox
from app.ingest.apply import drain_inbox
from app.store.models import DeadLetter, Organization, OutboxEntry
from devtools.crm import FakeCrm
from devtools.httpserver import LocalServer, Request, Response, json_response
from tests.conftest import AUTH, HUBSPOT_TOKEN, destination
from tests.support.fake_loke import FakeLoke, customer_event, make_customer

ORG = "org-safety"
NOW = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.UTC)
PUBLIC = ipaddress.ip_address("93.184.216.34")


class Witness(LocalServer):
    """A server that only records what reaches it: where a redirect would lead."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Request] = []
        self._lock = threading.Lock()

    def handle(self, request: Request) -> Response:
        with self._lock:
            self.received.append(request)
        return json_response(200, {"portalId": 1, "results": []})


class Redirecting(LocalServer):
    """A CRM (or HubSpot) that answers every request with a redirect to `location`."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__()
        self.status = status
        self.location = location
        self.requests = 0

    def handle(self, request: Request) -> Response:
        self.requests += 1
        return Response(self.status, b"moved", {"Location": self.location})


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    """Claims and settles are written per dialect: every test runs on both stores."""
    return settings_on_each_store


@pytest.fixture
def witness() -> Iterator[Witness]:
    with Witness() as server:
        yield server


def in_production(services: Services) -> None:
    """Settings as in production: not embedded, private destinations not allowed (the fixture's
    app allows them, its fake CRMs being on 127.0.0.1)."""
    services.settings = services.settings.model_copy(
        update={"allow_private_destinations": False, "celery_broker_url": "memory://"}
    )
    assert not services.settings.private_destinations_allowed


def connect(client: FlaskClient, loke: FakeLoke, target: dict[str, Any]) -> Any:
    loke.add_org(ORG)
    return client.put(f"/api/orgs/{ORG}", json={"destination": target}, headers=AUTH)


def queue_a_change(services: Services) -> None:
    body = customer_event("customer.updated", ORG, make_customer("c1", NOW))
    inbox.store(services.db, ORG, body["event"], json.dumps(body).encode(), "test")
    assert drain_inbox(services).failed == 0


def flush(services: Services) -> None:
    """A flush short enough for a test: it tries, pauses, and may try again meanwhile."""
    flush_org(services, ORG, time_budget=1)


def pending(services: Services) -> list[OutboxEntry]:
    with services.db.transaction() as session:
        return [e for e in session.scalars(select(OutboxEntry)) if e.pending]


def dead_letters(services: Services) -> list[DeadLetter]:
    with services.db.transaction() as session:
        return list(session.scalars(select(DeadLetter)))


def delivery(client: FlaskClient) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/api/orgs/{ORG}", headers=AUTH).json["delivery"]  # type: ignore[index]
    return found


def stored(services: Services) -> Organization | None:
    with services.db.transaction() as session:
        return session.get(Organization, ORG)


# -- the rule -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 (an address judged, not bound)
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),  # reserved, and Python counts it private
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a01:203", "private"),  # NAT64 of 10.1.2.3
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),  # NAT64 of a public address: an IPv6-only network's way out
    ],
)
def test_only_public_addresses_pass_the_rule(address: str, kind: str | None) -> None:
    assert addresses.refusal(ipaddress.ip_address(address)) == kind


def test_a_name_is_judged_by_every_address_it_resolves_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(addresses.PrivateAddress, match=r"localhost \(.+\) is a loopback"):
        addresses.check_url("http://localhost:8080/crm")  # /etc/hosts: no resolver needed
    addresses.check_url("http://93.184.216.34/crm")  # a public literal is itself
    # One private address among public ones is enough: which a connection gets is not ours.
    private = ipaddress.ip_address("10.0.0.7")
    monkeypatch.setattr(addresses, "resolve", lambda host, port: [PUBLIC, private])
    with pytest.raises(addresses.PrivateAddress, match=r"crm\.example \(10\.0\.0\.7\)"):
        addresses.check_url("https://crm.example/in")


# -- redirects ----------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_pauses_delivery_naming_where_it_pointed(
    status: int, client: FlaskClient, services: Services, loke: FakeLoke, witness: Witness
) -> None:
    stolen = f"{witness.url}/elsewhere"
    with Redirecting(status, stolen) as crm:
        answer = connect(client, loke, {"type": "http", "url": crm.url, "secret": "crm-secret-1"})
        assert answer.status_code == 201, answer.json
        queue_a_change(services)
        flush(services)
        assert crm.requests >= 1  # tried (again after each pause, within the flush's budget)
    assert witness.received == []  # neither re-posted (307) nor fetched (302)
    # Not delivered, not a dead letter: the records wait for the URL to be fixed.
    assert len(pending(services)) == 1
    assert dead_letters(services) == []
    state = delivery(client)
    assert state["state"] == "unreachable"
    assert f"HTTP {status}" in state["lastError"]
    assert stolen in state["lastError"]
    assert "not followed" in state["lastError"]


def test_a_hubspot_redirect_is_not_followed_and_named(
    client: FlaskClient, services: Services, loke: FakeLoke, witness: Witness
) -> None:
    stolen = f"{witness.url}/account-info"
    with Redirecting(307, stolen) as fake:
        target = {"type": "hubspot", "accessToken": HUBSPOT_TOKEN, "baseUrl": fake.url}
        answer = connect(client, loke, target)
    assert answer.status_code == 503, answer.json
    assert stolen in answer.json["error"]["message"]
    assert witness.received == []
    assert stored(services) is None


# -- private addresses, when connecting ---------------------------------------------------------
PRIVATE_URLS = [
    "http://127.0.0.1:9/crm",
    "http://10.1.2.3/crm",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:9/crm",
    "http://[::ffff:127.0.0.1]:9/crm",
    "http://localhost:9/crm",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_a_private_destination_is_refused_when_connecting_in_production(
    url: str, client: FlaskClient, services: Services, loke: FakeLoke
) -> None:
    in_production(services)
    answer = connect(client, loke, {"type": "http", "url": url, "secret": "crm-secret-1"})
    assert answer.status_code == 400, answer.json
    message = answer.json["error"]["message"]
    assert "address" in message
    assert "ALLOW_PRIVATE_DESTINATIONS" in message
    assert stored(services) is None
    assert not loke.subscribed(ORG)


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_a_private_destination_is_accepted_when_allowed(
    url: str, client: FlaskClient, services: Services, loke: FakeLoke
) -> None:
    assert services.settings.private_destinations_allowed
    answer = connect(client, loke, {"type": "http", "url": url, "secret": "crm-secret-1"})
    assert answer.status_code == 201, answer.json


def test_a_public_destination_is_accepted_in_production(
    client: FlaskClient, services: Services, loke: FakeLoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_production(services)
    monkeypatch.setattr(addresses, "resolve", lambda host, port: [PUBLIC])
    answer = connect(client, loke, {"type": "http", "url": "https://crm.example/in",
                                    "secret": "crm-secret-1"})  # fmt: skip
    assert answer.status_code == 201, answer.json


@pytest.mark.parametrize(
    ("failure", "status"),
    [(socket.EAI_NONAME, 400), (socket.EAI_AGAIN, 503)],  # a typo; a resolver not answering
)
def test_a_host_that_does_not_resolve_is_not_saved_in_production(
    failure: int,
    status: int,
    client: FlaskClient,
    services: Services,
    loke: FakeLoke,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unresolved(host: str, port: int) -> list[addresses.Address]:
        raise socket.gaierror(failure, "no answer")

    in_production(services)
    monkeypatch.setattr(addresses, "resolve", unresolved)
    answer = connect(client, loke, {"type": "http", "url": "https://crm.example/in",
                                    "secret": "crm-secret-1"})  # fmt: skip
    assert answer.status_code == status, answer.json
    assert "crm.example" in answer.json["error"]["message"]
    assert stored(services) is None


def test_a_hubspot_base_url_on_a_private_address_is_refused_in_production(
    client: FlaskClient, services: Services, loke: FakeLoke, witness: Witness
) -> None:
    in_production(services)
    target = {"type": "hubspot", "accessToken": HUBSPOT_TOKEN, "baseUrl": witness.url}
    answer = connect(client, loke, target)
    assert answer.status_code == 400, answer.json
    assert "loopback" in answer.json["error"]["message"]
    assert witness.received == []
    assert stored(services) is None


# -- private addresses, when sending ------------------------------------------------------------
def test_a_destination_found_private_when_sending_pauses_and_nothing_is_sent(
    client: FlaskClient, services: Services, loke: FakeLoke, crm: FakeCrm
) -> None:
    assert connect(client, loke, destination(crm)).status_code == 201  # allowed back then
    queue_a_change(services)
    in_production(services)
    flush(services)
    assert crm.batches == []
    assert crm.answered == []
    assert len(pending(services)) == 1
    assert dead_letters(services) == []
    state = delivery(client)
    assert state["state"] == "unreachable"
    assert "127.0.0.1 is a loopback address" in state["lastError"]


def test_a_name_that_rebinds_to_a_private_address_is_refused_on_the_socket(
    client: FlaskClient,
    services: Services,
    loke: FakeLoke,
    crm: FakeCrm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The checks' lookups say public; the connection's own lookup reaches 127.0.0.1."""
    url = crm.url.replace("127.0.0.1", "localhost")
    assert connect(client, loke, destination(crm, url=url)).status_code == 201
    queue_a_change(services)
    in_production(services)
    monkeypatch.setattr(addresses, "resolve", lambda host, port: [PUBLIC])
    flush(services)
    assert crm.batches == []
    assert crm.answered == []
    assert len(pending(services)) == 1
    assert dead_letters(services) == []
    assert "loopback address" in delivery(client)["lastError"]
