"""Fixtures shared by every test: settings, an app on a fresh database, a recording dispatcher."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.core.config import Settings, load_settings
from app.core.services import Services
from app.factory import create_app
from app.store.migrate import upgrade
from devtools.crm import FakeCrm
from tests.support.credentials import (
    ADMIN_TOKEN,
    AUTH,
    CRM_SECRET,
    HUBSPOT_TOKEN,
    LOKE_CLIENT_ID,
    LOKE_CLIENT_SECRET,
    SECRET_KEY,
)
from tests.support.fake_hubspot import FakeHubSpot
from tests.support.fake_loke import FakeLoke
from tests.support.processes import fresh_postgres_database

# Re-exported: most tests import them from here.
__all__ = [
    "ADMIN_TOKEN",
    "AUTH",
    "CRM_SECRET",
    "HUBSPOT_TOKEN",
    "LOKE_CLIENT_ID",
    "LOKE_CLIENT_SECRET",
    "SECRET_KEY",
]


class RecordingDispatcher:
    """Stands in for the broker in fast tests: records what would have been enqueued."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...], dict[str, Any], float]] = []
        self.fail_with: Exception | None = None

    def send(
        self,
        task_name: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        countdown: float = 0,
    ) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append((task_name, args, kwargs or {}, countdown))

    def ping(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def names(self) -> list[str]:
        return [name for name, *_ in self.sent]


def make_settings(tmp_path: Path, loke: FakeLoke, **overrides: Any) -> Settings:
    """Embedded SQLite settings under tmp_path unless overridden, talking to a fake LOKE."""
    values: dict[str, Any] = {
        "var_dir": tmp_path,
        "loke_api_url": loke.url,
        "loke_auth_url": loke.url,
        "loke_client_id": LOKE_CLIENT_ID,
        "loke_client_secret": LOKE_CLIENT_SECRET,
        "admin_token": ADMIN_TOKEN,
        "secret_key": SECRET_KEY,
        "delivery_backoff_base_seconds": 0.2,
        "delivery_timeout_seconds": 3.0,
        "delivery_lease_seconds": 10.0,
        "allow_private_destinations": True,  # the fake CRMs listen on 127.0.0.1
        # The failed-guess limiter has its own tests (test_web_auth.py); route sweeps send
        # dozens of wrong tokens from one address.
        "auth_failures_per_minute": 1000,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def loke() -> Iterator[FakeLoke]:
    with FakeLoke(LOKE_CLIENT_ID, LOKE_CLIENT_SECRET) as fake:
        yield fake


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    """A fake HubSpot portal whose limits no test reaches unless it sets them."""
    with FakeHubSpot(tokens={HUBSPOT_TOKEN: "portal-1"}, per_ten_seconds=10_000) as fake:
        yield fake


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    with FakeCrm(CRM_SECRET) as fake:
        yield fake


@pytest.fixture
def settings(tmp_path: Path, loke: FakeLoke) -> Settings:
    return make_settings(tmp_path, loke)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings_on_each_store(
    request: pytest.FixtureRequest, tmp_path: Path, loke: FakeLoke
) -> Iterator[Settings]:
    """The embedded SQLite store, then a fresh PostgreSQL database: for modules whose SQL is
    written per dialect (bulk upserts, array lookups, the list diff)."""
    if request.param == "sqlite":
        yield make_settings(tmp_path, loke)
        return
    with fresh_postgres_database() as url:
        yield make_settings(
            tmp_path, loke, database_url=url.replace("postgresql://", "postgresql+psycopg://", 1)
        )


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def app(settings: Settings, dispatcher: RecordingDispatcher) -> Iterator[Flask]:
    upgrade(settings.sqlalchemy_url)
    flask_app = create_app(settings, dispatcher)
    yield flask_app
    services_of(flask_app).db.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def services(app: Flask) -> Services:
    return services_of(app)


def services_of(flask_app: Flask) -> Services:
    found: Services = flask_app.extensions["loke_sync"]
    return found


def destination(crm: FakeCrm, **overrides: Any) -> dict[str, Any]:
    return {"type": "http", "url": crm.url, "secret": CRM_SECRET, "batchSize": 100,
            "maxRequestsPerSecond": 50} | overrides  # fmt: skip
