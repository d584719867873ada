"""The HubSpot destination where people meet it: the CLI, the dashboard, the logs (the token
never in them), a 403 shown like a 401, and the portal's properties checked again by a process
that has not checked them yet (a restart)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from app.cli.main import main
from app.core.services import Services
from app.delivery.destinations import hubspot as hubspot_destination_module
from app.delivery.sender import flush_org
from tests.conftest import HUBSPOT_TOKEN
from tests.support.fake_hubspot import FakeHubSpot
from tests.support.fake_loke import FakeLoke
from tests.unit.test_cli import runner  # noqa: F401  (the CLI fixture)
from tests.unit.test_dashboard import page, signed_in  # noqa: F401  (the dashboard fixtures)
from tests.unit.test_delivery import ORG, apply, dead_letters, delivery_status, updated
from tests.unit.test_hubspot_contacts import connect, contact, deliver


@pytest.fixture
def connected(client: FlaskClient, loke: FakeLoke, hubspot: FakeHubSpot) -> None:
    assert connect(client, loke, hubspot).status_code == 201


def property_reads(hubspot: FakeHubSpot) -> int:
    return sum(n for (method, route), n in hubspot.requests.by_route.items()
               if method == "GET" and route.startswith("/crm/properties/"))  # fmt: skip


def test_the_cli_connects_an_organization_to_hubspot(
    runner: CliRunner,  # noqa: F811
    loke: FakeLoke,
    hubspot: FakeHubSpot,
) -> None:
    loke.add_org("org-cli", "Cafe CLI")
    result = runner.invoke(main, ["orgs", "connect", "org-cli", "--hubspot-token", HUBSPOT_TOKEN,
                                  "--hubspot-base-url", hubspot.url,
                                  "--requests-per-ten-seconds", "190"])  # fmt: skip
    assert result.exit_code == 0, result.output
    [status] = json.loads(runner.invoke(main, ["orgs", "list", "--json"]).output)["orgs"]
    assert status["destination"]["type"] == "hubspot"
    assert status["destination"]["portalId"] == hubspot.portal_id()
    assert HUBSPOT_TOKEN not in json.dumps(status)
    both = runner.invoke(main, ["orgs", "connect", "org-cli", "--hubspot-token", "x" * 20,
                                "--url", "http://crm.example", "--secret", "s" * 10])  # fmt: skip
    assert both.exit_code != 0
    assert "either --url and --secret (http) or --hubspot-token" in both.output


def test_the_dashboard_shows_the_portal_conflicts_and_a_rejected_token(
    client: FlaskClient,
    services: Services,
    connected: None,
    hubspot: FakeHubSpot,
    signed_in: str,  # noqa: F811
) -> None:
    apply(services, updated("C1", 1, email="not an email"))
    deliver(services)
    shown = page(client, f"/orgs/{ORG}")
    assert f"portal {hubspot.portal_id()}" in shown
    assert "1 customers held without their email" in shown
    assert "HubSpot calls the email invalid" in shown
    assert "Retry conflicts" in shown
    retried = client.post(f"/orgs/{ORG}/conflicts/retry", data={"csrf": signed_in})
    assert retried.status_code == 303
    assert HUBSPOT_TOKEN not in shown
    hubspot.revoke(HUBSPOT_TOKEN)
    apply(services, updated("C1", 2))
    flush_org(services, ORG, time_budget=0.5)
    assert "token rejected since" in page(client, f"/orgs/{ORG}")


def test_the_token_is_never_logged(
    client: FlaskClient,
    services: Services,
    loke: FakeLoke,
    hubspot: FakeHubSpot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert connect(client, loke, hubspot).status_code == 201
    apply(services, updated("C1", 1))
    deliver(services)
    hubspot.revoke(HUBSPOT_TOKEN)
    apply(services, updated("C1", 2))
    flush_org(services, ORG, time_budget=0.5)
    assert delivery_status(client)["state"] == "tokenRejected"
    assert caplog.records
    assert all(HUBSPOT_TOKEN not in record.getMessage() for record in caplog.records)
    assert HUBSPOT_TOKEN not in caplog.text


def test_a_token_missing_scopes_403_is_shown_as_rejected_without_dead_letters(
    client: FlaskClient, services: Services, connected: None, hubspot: FakeHubSpot
) -> None:
    hubspot.restrict(HUBSPOT_TOKEN)
    apply(services, updated("C1", 1))
    flush_org(services, ORG, time_budget=0.5)
    status: dict[str, Any] = delivery_status(client)
    assert status["state"] == "tokenRejected"
    assert dead_letters(client) == []


def test_a_process_that_has_not_checked_the_portal_checks_it_before_its_first_batch(
    client: FlaskClient,
    services: Services,
    connected: None,
    hubspot: FakeHubSpot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hubspot_destination_module, "_provisioned", set())  # a fresh process
    before = property_reads(hubspot)
    apply(services, updated("C1", 1))
    deliver(services)
    checked = property_reads(hubspot) - before
    assert checked > 0
    apply(services, updated("C2", 1))
    deliver(services)
    assert property_reads(hubspot) - before == checked  # once per process
    assert contact(hubspot, "C2")
