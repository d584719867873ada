"""`loke-sync orgs connect` refused by LOKE says why in one line and exits 1, leaving nothing;
`loke-sync backfill --follow` shows why a page fails while the run retries, and stops with
the run's error when it fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import create_engine, func, select

import app.cli.admin as admin_cli
from app.backfill import customers
from app.cli.main import main
from app.factory import create_app
from app.loke.client import LokeClient, RetryPolicy
from app.loke.tokens import MemoryTokenCache, TokenSource
from app.store.migrate import upgrade
from app.store.models import BackfillRun, Organization
from devtools.crm import FakeCrm
from tests.conftest import (
    CRM_SECRET,
    LOKE_CLIENT_ID,
    LOKE_CLIENT_SECRET,
    RecordingDispatcher,
    make_settings,
    services_of,
)
from tests.support.cli import embedded_environment, use_environment
from tests.support.fake_loke import FakeLoke

ORG = "org-cli"


@pytest.fixture
def runner(tmp_path: Path, loke: FakeLoke, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Commands run in-process on the embedded store under tmp_path, against the fake LOKE."""
    use_environment(monkeypatch, embedded_environment(tmp_path, loke))
    upgrade(make_settings(tmp_path, loke).sqlalchemy_url)
    return CliRunner()


def connect(runner: CliRunner, crm: FakeCrm) -> Result:
    return runner.invoke(main, ["orgs", "connect", ORG, "--url", crm.url, "--secret", CRM_SECRET])


def organizations(tmp_path: Path, loke: FakeLoke) -> int:
    engine = create_engine(make_settings(tmp_path, loke).sqlalchemy_url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(Organization)).scalar_one()
    finally:
        engine.dispose()


def assert_one_error_line(result: Result, *said: str) -> None:
    assert result.exit_code == 1, result.output
    [line] = result.output.splitlines()
    assert line.startswith("Error: "), line
    for words in said:
        assert words in line


def test_a_connect_without_loke_credentials_exits_1_with_one_line(
    runner: CliRunner, tmp_path: Path, loke: FakeLoke, crm: FakeCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    loke.add_org(ORG)
    monkeypatch.delenv("LOKE_CLIENT_ID")
    monkeypatch.delenv("LOKE_CLIENT_SECRET")

    refused = connect(runner, crm)

    assert_one_error_line(refused, "LOKE_CLIENT_ID and LOKE_CLIENT_SECRET must be set")
    assert organizations(tmp_path, loke) == 0
    assert loke.subscriptions == {}
    monkeypatch.setenv("LOKE_CLIENT_ID", LOKE_CLIENT_ID)
    monkeypatch.setenv("LOKE_CLIENT_SECRET", LOKE_CLIENT_SECRET)
    connected = connect(runner, crm)
    assert connected.exit_code == 0, connected.output
    assert "connected; backfill started" in connected.output


def test_a_connect_loke_refuses_exits_1_with_one_line(
    runner: CliRunner, tmp_path: Path, loke: FakeLoke, crm: FakeCrm
) -> None:
    refused = connect(runner, crm)  # the organization has not installed the add-on

    assert_one_error_line(refused, f"{ORG} was not connected", "installed the add-on", "404")
    assert organizations(tmp_path, loke) == 0
    loke.add_org(ORG)
    assert connect(runner, crm).exit_code == 0


@pytest.fixture
def worker(tmp_path: Path, loke: FakeLoke) -> Iterator[tuple[Flask, LokeClient]]:
    """What a worker would use to run the backfill's pages: the same store, and a LOKE client
    that tries once (the fake LOKE's failures are then one per page task)."""
    flask_app = create_app(make_settings(tmp_path, loke), RecordingDispatcher())
    with requests.Session() as http:
        tokens = TokenSource(
            http, loke.url, LOKE_CLIENT_ID, LOKE_CLIENT_SECRET, 5.0, MemoryTokenCache()
        )
        yield flask_app, LokeClient(loke.url, tokens, http, 5.0, RetryPolicy(attempts=1))
    services_of(flask_app).db.dispose()


def test_follow_shows_why_pages_fail_and_stops_with_the_error_when_the_run_fails(
    runner: CliRunner,
    loke: FakeLoke,
    crm: FakeCrm,
    worker: tuple[Flask, LokeClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loke.add_org(ORG)
    assert connect(runner, crm).exit_code == 0  # its backfill is running, no worker about
    flask_app, worker_loke = worker
    services = services_of(flask_app)
    with services.db.transaction() as session:
        [run_id] = session.scalars(select(BackfillRun.id))
    # Between two looks of --follow, a worker runs the run's page: LOKE answers 503 (worth a
    # retry), then 403 (final).
    answers = [503, 403]

    def a_page_is_tried(_seconds: float) -> None:
        assert answers, "--follow went on after the run failed"
        loke.fail_next(1, status=answers.pop(0))
        customers.run_page(services, worker_loke, run_id)

    monkeypatch.setattr(admin_cli, "time", SimpleNamespace(sleep=a_page_is_tried))

    followed = runner.invoke(main, ["backfill", ORG, "--follow"])

    assert followed.exit_code == 1, followed.output
    assert answers == []
    lines = followed.output.splitlines()
    retrying = [line for line in lines if "page failed" in line]
    assert len(retrying) == 1, followed.output
    assert "(try 1 of 6; retrying)" in retrying[0]
    assert "503 Injected failure" in retrying[0]
    assert lines[-1].startswith("Error: backfill failed: ")
    assert "403 Injected failure" in lines[-1]
