"""`loke-sync webhook send` signs a body with the organization's stored secret, as LOKE does,
and the service's own receiver, served over real HTTP, accepts it; on each store."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from werkzeug.serving import make_server

from app.cli.main import main
from app.core.config import Settings
from app.core.services import Services
from app.factory import create_app
from app.store.migrate import upgrade
from app.store.models import InboxEvent
from devtools.crm import FakeCrm
from tests.conftest import (
    ADMIN_TOKEN,
    AUTH,
    SECRET_KEY,
    RecordingDispatcher,
    destination,
    services_of,
)
from tests.support.cli import embedded_environment, use_environment
from tests.support.fake_loke import FakeLoke
from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(60)

ORG = "org-hooked"
BODY = {
    "event": "customer.updated",
    "organization": {"id": ORG},
    "customer": {"id": "C1", "firstName": "Ada", "updatedAt": "2025-06-01T12:00:00Z"},
}


@pytest.fixture
def served(
    settings_on_each_store: Settings,
    loke: FakeLoke,
    crm: FakeCrm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Services]:
    """The real app on 127.0.0.1 with ORG connected; the commands configured to reach it."""
    settings = settings_on_each_store
    upgrade(settings.sqlalchemy_url)
    app = create_app(settings, RecordingDispatcher())
    loke.add_org(ORG)
    answer = app.test_client().put(f"/api/orgs/{ORG}", json={"destination": destination(crm)},
                                   headers=AUTH)  # fmt: skip
    assert answer.status_code == 201, answer.get_json()
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    use_environment(monkeypatch, embedded_environment(tmp_path, loke) | {
        "DATABASE_URL": settings.database_url,  # None on SQLite: the same file under tmp_path
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "SECRET_KEY": SECRET_KEY,
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
    })  # fmt: skip
    try:
        yield services_of(app)
    finally:
        server.shutdown()
        thread.join(timeout=5)
        services_of(app).db.dispose()


def stored_events(services: Services) -> list[tuple[str, str]]:
    with services.db.transaction() as session:
        rows = session.execute(select(InboxEvent.org_id, InboxEvent.event_type)).all()
    return [(org, event) for org, event in rows]


def written(tmp_path: Path, body: object) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(body))
    return str(path)


def test_a_signed_body_is_accepted_by_the_receiver_and_stored(
    served: Services, tmp_path: Path
) -> None:
    result = CliRunner().invoke(main, ["webhook", "send", ORG, written(tmp_path, BODY)])
    assert result.exit_code == 0, result.output
    status, _, answer = result.output.strip().partition(" ")
    assert (status, json.loads(answer)) == ("202", {"status": "accepted"})
    assert stored_events(served) == [(ORG, "customer.updated")]
    again = CliRunner().invoke(main, ["webhook", "send", ORG, "-"], input=json.dumps(BODY))
    assert again.exit_code == 0, again.output
    assert json.loads(again.output.strip().partition(" ")[2]) == {"status": "duplicate"}


def test_a_refusal_by_the_receiver_is_one_error_line(served: Services, tmp_path: Path) -> None:
    other = BODY | {"organization": {"id": "org-else"}}
    result = CliRunner().invoke(main, ["webhook", "send", ORG, written(tmp_path, other)])
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    prefix = "Error: the receiver answered 400: "
    assert line.startswith(prefix), line
    assert json.loads(line.removeprefix(prefix))["error"]["code"] == "invalid_body"
    assert stored_events(served) == []


def test_an_organization_that_is_not_connected_is_one_error_line(
    served: Services, tmp_path: Path
) -> None:
    result = CliRunner().invoke(main, ["webhook", "send", "org-nobody", written(tmp_path, BODY)])
    assert (result.exit_code, result.output) == (
        1, "Error: organization org-nobody is not connected: it has no secret\n",
    )  # fmt: skip


def test_a_receiver_out_of_reach_and_a_wrong_secret_key_are_one_error_line(
    served: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    body = written(tmp_path, BODY)
    unreachable = CliRunner().invoke(main, ["webhook", "send", ORG, body, "--url", nowhere])
    assert unreachable.exit_code == 1
    [line] = unreachable.output.splitlines()
    assert line.startswith(f"Error: could not reach the receiver at {nowhere}/webhooks/loke/{ORG}")
    monkeypatch.setenv("SECRET_KEY", "not-the-key-that-stored-these-secrets-0123")
    wrong_key = CliRunner().invoke(main, ["webhook", "send", ORG, body])
    assert wrong_key.exit_code == 1
    [line] = wrong_key.output.splitlines()
    assert line.startswith("Error: a stored secret cannot be decrypted"), line
