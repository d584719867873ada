"""Rotating an organization's webhook secret: a new one at LOKE, the old one still accepted for a
grace period (LOKE may have signed deliveries with it that are still on their way), then never.
LOKE refusing the new subscription leaves everything as it was."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from app.cli.main import main
from app.core.config import Settings
from app.factory import create_app
from app.orgs import webhook_secrets
from app.store.models import Organization
from devtools.crm import FakeCrm
from tests.conftest import (
    ADMIN_TOKEN,
    AUTH,
    LOKE_CLIENT_ID,
    LOKE_CLIENT_SECRET,
    SECRET_KEY,
    RecordingDispatcher,
    destination,
    services_of,
)
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, sign

ORG = "org-rotate"
NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
GRACE = 3600.0


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store.model_copy(update={"webhook_secret_grace_seconds": GRACE})


@pytest.fixture
def old_secret(client: FlaskClient, loke: FakeLoke, crm: FakeCrm) -> str:
    loke.add_org(ORG)
    answer = client.put(f"/api/orgs/{ORG}", json={"destination": destination(crm)}, headers=AUTH)
    assert answer.status_code == 201, answer.json
    return loke.secret_for(ORG)


class Webhooks:
    """Signed webhooks of ORG, a new body each time (a repeated body would be a duplicate)."""

    def __init__(self) -> None:
        self.sent = 0

    def post(self, client: FlaskClient, secret: str) -> int:
        self.sent += 1
        customer = make_customer(f"R{self.sent}", NOW)
        body = json.dumps(customer_event("customer.updated", ORG, customer)).encode()
        headers = {"Content-Type": "application/json", "X-Event-Signature": sign(body, secret)}
        return client.post(f"/webhooks/loke/{ORG}", data=body, headers=headers).status_code


@pytest.fixture
def webhooks() -> Webhooks:
    return Webhooks()


def rotate(client: FlaskClient, org_id: str = ORG) -> Any:
    return client.post(f"/api/orgs/{org_id}/webhook-secret/rotate", headers=AUTH)


def stored_secrets(app: Flask) -> tuple[str, str | None]:
    services = services_of(app)
    with services.db.transaction() as session:
        org = session.get(Organization, ORG)
        assert org is not None
        previous = org.webhook_secret_previous_enc
        return services.box.decrypt(org.webhook_secret_enc), (
            services.box.decrypt(previous) if previous else None
        )


def test_after_a_rotation_both_secrets_sign_until_the_grace_ends_then_only_the_new_one(
    app: Flask, client: FlaskClient, loke: FakeLoke, old_secret: str, webhooks: Webhooks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    assert webhooks.post(client, old_secret) == 202  # the old secret is cached now
    before = dt.datetime.now(dt.UTC)
    answer = rotate(client)
    after = dt.datetime.now(dt.UTC)
    assert answer.status_code == 200, answer.json
    assert answer.json["rotated"] is True
    until = dt.datetime.fromisoformat(answer.json["previousValidUntil"])
    assert before + dt.timedelta(seconds=GRACE) <= until <= after + dt.timedelta(seconds=GRACE)

    new_secret = loke.secret_for(ORG)  # LOKE signs with the new one from now on
    assert new_secret != old_secret
    assert stored_secrets(app) == (new_secret, old_secret)
    assert webhooks.post(client, new_secret) == 202
    assert webhooks.post(client, old_secret) == 202  # still in its grace

    # The grace is over (the clock moved, the cache did not): only the new secret signs.
    later = until + dt.timedelta(seconds=1)
    monkeypatch.setattr(webhook_secrets, "utcnow", lambda: later)
    assert webhooks.post(client, old_secret) == 401
    assert webhooks.post(client, new_secret) == 202


def test_a_second_rotation_retires_the_first_secret_at_once(
    client: FlaskClient, loke: FakeLoke, old_secret: str, webhooks: Webhooks
) -> None:
    assert rotate(client).status_code == 200
    middle = loke.secret_for(ORG)
    assert rotate(client).status_code == 200
    newest = loke.secret_for(ORG)
    assert len({old_secret, middle, newest}) == 3
    assert webhooks.post(client, old_secret) == 401  # only the one LOKE used last stays valid
    assert webhooks.post(client, middle) == 202
    assert webhooks.post(client, newest) == 202


def test_when_loke_refuses_the_new_subscription_nothing_is_rotated(
    app: Flask, client: FlaskClient, loke: FakeLoke, old_secret: str, webhooks: Webhooks
) -> None:
    loke.fail_next(1, status=403)
    answer = rotate(client)
    assert answer.status_code == 502, answer.json
    assert answer.json["error"]["code"] == "loke_error"
    assert loke.secret_for(ORG) == old_secret  # LOKE still signs with the old secret...
    assert stored_secrets(app)[0] == old_secret  # ...which is ours again
    assert webhooks.post(client, old_secret) == 202


def test_rotating_an_organization_that_is_not_connected_is_not_found(
    client: FlaskClient, old_secret: str
) -> None:
    assert rotate(client, "org-nobody").status_code == 404
    assert client.delete(f"/api/orgs/{ORG}", headers=AUTH).status_code == 200
    answer = rotate(client)
    assert answer.status_code == 404
    assert answer.json["error"]["code"] == "not_found"


def test_after_a_disconnect_and_a_new_connect_no_earlier_secret_signs(
    client: FlaskClient, loke: FakeLoke, crm: FakeCrm, old_secret: str, webhooks: Webhooks
) -> None:
    assert rotate(client).status_code == 200
    rotated = loke.secret_for(ORG)
    assert client.delete(f"/api/orgs/{ORG}", headers=AUTH).status_code == 200
    answer = client.put(f"/api/orgs/{ORG}", json={"destination": destination(crm)}, headers=AUTH)
    assert answer.status_code == 201, answer.json
    fresh = loke.secret_for(ORG)
    assert webhooks.post(client, fresh) == 202
    assert webhooks.post(client, rotated) == 401
    assert webhooks.post(client, old_secret) == 401  # it was in its grace when disconnected


def test_another_web_process_that_cached_the_old_secret_takes_the_new_one_at_once(
    settings: Settings, client: FlaskClient, loke: FakeLoke, old_secret: str, webhooks: Webhooks
) -> None:
    # Another gunicorn worker on the same database, with the old secret in its cache: LOKE
    # does not retry a 4xx, so a stale cache refusing the new secret would lose the webhook.
    other = create_app(settings, RecordingDispatcher())
    try:
        other_client = other.test_client()
        assert webhooks.post(other_client, old_secret) == 202
        assert rotate(client).status_code == 200
        assert webhooks.post(other_client, loke.secret_for(ORG)) == 202
        assert webhooks.post(other_client, old_secret) == 202
    finally:
        services_of(other).db.dispose()


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path, loke: FakeLoke,
            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The environment `loke-sync` reads, pointing at the same database as the app."""
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    env = {"VAR_DIR": str(tmp_path), "ADMIN_TOKEN": ADMIN_TOKEN, "SECRET_KEY": SECRET_KEY,
           "LOKE_API_URL": loke.url, "LOKE_AUTH_URL": loke.url,
           "LOKE_CLIENT_ID": LOKE_CLIENT_ID, "LOKE_CLIENT_SECRET": LOKE_CLIENT_SECRET,
           "WEBHOOK_SECRET_GRACE_SECONDS": str(GRACE)}  # fmt: skip
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_the_cli_rotates_like_the_api(
    app: Flask, client: FlaskClient, loke: FakeLoke, old_secret: str, webhooks: Webhooks,
    cli_env: None,
) -> None:  # fmt: skip
    result = CliRunner().invoke(main, ["orgs", "rotate-secret", ORG])
    assert result.exit_code == 0, result.output
    assert "rotated" in result.output
    new_secret = loke.secret_for(ORG)
    assert new_secret != old_secret
    assert stored_secrets(app) == (new_secret, old_secret)
    assert webhooks.post(client, new_secret) == 202

    refused = CliRunner().invoke(main, ["orgs", "rotate-secret", "org-nobody"])
    assert refused.exit_code != 0
    assert "not connected" in refused.output
