"""The sign-in page says where the admin token is: the file the embedded mode generated it into,
or the ADMIN_TOKEN environment variable of the service; never the token itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.factory import create_app
from app.store.migrate import upgrade
from tests.conftest import ADMIN_TOKEN, RecordingDispatcher, make_settings, services_of
from tests.support.fake_loke import FakeLoke

ENVIRONMENT_HINT = "the <code>ADMIN_TOKEN</code> environment variable of this service"


@pytest.fixture
def make_app(tmp_path: Path, loke: FakeLoke) -> Iterator[Any]:
    made: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        settings = make_settings(tmp_path, loke, **overrides)
        upgrade(settings.sqlalchemy_url)
        made.append(create_app(settings, RecordingDispatcher()))
        return made[-1]

    yield make
    for app in made:
        services_of(app).db.dispose()


def signin_page(app: Flask) -> str:
    answer = app.test_client().get("/signin")
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def test_the_embedded_mode_names_the_file_it_generated_the_token_into(
    make_app: Any, tmp_path: Path
) -> None:
    app = make_app(admin_token=None)  # generated into VAR_DIR, as `make run` does
    token_file = (tmp_path / "admin-token").resolve()
    shown = signin_page(app)
    assert f"<code>{token_file}</code>" in shown
    assert token_file.read_text().strip() not in shown
    assert ENVIRONMENT_HINT not in shown


def test_a_token_from_the_environment_is_named_as_such_even_beside_an_old_file(
    make_app: Any, tmp_path: Path
) -> None:
    (tmp_path / "admin-token").write_text("an-older-generated-token")
    shown = signin_page(make_app())  # ADMIN_TOKEN given, as the environment would
    assert ENVIRONMENT_HINT in shown
    assert "admin-token</code>" not in shown
    assert ADMIN_TOKEN not in shown


def test_outside_the_embedded_mode_the_token_is_the_environment_variable(
    make_app: Any, tmp_path: Path
) -> None:
    (tmp_path / "admin-token").write_text(ADMIN_TOKEN)  # even a file holding the very token
    shown = signin_page(make_app(celery_broker_url="redis://127.0.0.1:6379/15"))
    assert ENVIRONMENT_HINT in shown
    assert "admin-token</code>" not in shown
