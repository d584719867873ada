"""`loke-sync` commands call the same functions as the API (embedded SQLite, fake LOKE)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli.main import main
from app.store.migrate import upgrade
from devtools.crm import FakeCrm
from tests.conftest import CRM_SECRET, LOKE_CLIENT_ID, LOKE_CLIENT_SECRET, make_settings
from tests.support.fake_loke import FakeLoke


@pytest.fixture
def runner(tmp_path: Path, loke: FakeLoke, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "VAR_DIR": str(tmp_path),
        "ADMIN_TOKEN": "cli-admin-token",
        "SECRET_KEY": "cli-secret-key",
        "LOKE_API_URL": loke.url,
        "LOKE_AUTH_URL": loke.url,
        "LOKE_CLIENT_ID": LOKE_CLIENT_ID,
        "LOKE_CLIENT_SECRET": LOKE_CLIENT_SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    upgrade(make_settings(tmp_path, loke).sqlalchemy_url)
    return CliRunner()


def test_discover_lists_lokes_organizations_and_marks_the_connected_ones(
    runner: CliRunner, loke: FakeLoke, crm: FakeCrm
) -> None:
    loke.add_org("org-a", "Cafe A")
    loke.add_org("org-b", "Bar B")
    connect = runner.invoke(
        main, ["orgs", "connect", "org-b", "--url", crm.url, "--secret", CRM_SECRET]
    )
    assert connect.exit_code == 0, connect.output
    assert "connected; backfill started" in connect.output
    found = runner.invoke(main, ["orgs", "discover"])
    assert found.exit_code == 0, found.output
    lines = sorted(found.output.strip().splitlines())
    assert lines == ["org-a\t-\tCafe A", "org-b\tconnected\tBar B"]
    listed = runner.invoke(main, ["orgs", "list"])
    [status] = [json.loads(line) for line in listed.output.splitlines()]
    assert status["id"] == "org-b"
    assert status["backfill"]["status"] == "running"
    assert CRM_SECRET not in listed.output


def test_backfill_of_an_unknown_org_is_a_clear_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["backfill", "nobody"])
    assert result.exit_code != 0
    assert "organization nobody is not connected" in result.output


def test_disconnect_removes_the_subscription_at_loke(
    runner: CliRunner, loke: FakeLoke, crm: FakeCrm
) -> None:
    loke.add_org("org-c")
    runner.invoke(main, ["orgs", "connect", "org-c", "--url", crm.url, "--secret", CRM_SECRET])
    assert loke.subscriptions
    result = runner.invoke(main, ["orgs", "disconnect", "org-c", "--purge"])
    assert result.exit_code == 0, result.output
    assert not loke.subscriptions


def test_status_and_lists_sync_speak_for_the_same_functions_as_the_api(
    runner: CliRunner, loke: FakeLoke, crm: FakeCrm
) -> None:
    assert "no organizations yet" in runner.invoke(main, ["status"]).output
    loke.add_org("org-d")
    loke.set_list("org-d", "L1", "VIPs", [])
    runner.invoke(main, ["orgs", "connect", "org-d", "--url", crm.url, "--secret", CRM_SECRET])
    status = runner.invoke(main, ["status"])
    assert status.exit_code == 0, status.output
    assert "org-d: connected · subscription ok · backfill running" in status.output
    refused = runner.invoke(main, ["lists", "sync", "org-d"])
    assert refused.exit_code != 0
    assert "chose no lists" in refused.output


def test_dead_letters_are_replayed_by_id_or_all_that_match(
    runner: CliRunner, tmp_path: Path, loke: FakeLoke
) -> None:
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from app.store.models import DeadLetter

    engine = create_engine(make_settings(tmp_path, loke).sqlalchemy_url)
    now = dt.datetime.now(dt.UTC)
    letters = [("org-x", "refused: invalid email"), ("org-x", "refused: too long"),
               ("org-y", "refused: invalid email"),
               ("org-x", "refused: Invalid EMAIL")]  # fmt: skip
    with Session(engine) as session, session.begin():
        for org, reason in letters:
            session.add(DeadLetter(org_id=org, kind="operation", reason=reason, created_at=now,
                                   detail={"keys": [["contact", "C1"]]}))  # fmt: skip
    for usage in (["replay"], ["replay", "1", "--all"], ["replay", "1", "--org", "org-x"],
                  ["replay", "--all", "--reason", "a\x00b"]):  # fmt: skip
        refused = runner.invoke(main, ["dead-letters", *usage])
        assert refused.exit_code == 2, (usage, refused.output)
    result = runner.invoke(
        main, ["dead-letters", "replay", "--all", "--org", "org-x", "--reason", "email"]
    )
    assert result.exit_code == 0, result.output
    assert "2 dead letters queued again" in result.output
    one = runner.invoke(main, ["dead-letters", "replay", "2"])
    assert "dead letter 2 queued again" in one.output
    with Session(engine) as session:
        replayed = session.scalars(select(DeadLetter.id).where(DeadLetter.replayed_at.isnot(None)))
        assert sorted(replayed) == [1, 2, 4]
    engine.dispose()


def test_every_command_has_help_that_says_what_it_does(runner: CliRunner) -> None:
    for command in (["run"], ["db", "upgrade"], ["orgs", "discover"], ["backfill"],
                    ["dead-letters", "replay"], ["lists", "sync"], ["status"]):  # fmt: skip
        result = runner.invoke(main, [*command, "--help"])
        assert result.exit_code == 0
        assert "Usage:" in result.output


def test_the_embedded_broker_has_every_queue_before_web_worker_and_beat_start(
    tmp_path: Path, loke: FakeLoke
) -> None:
    """Web, worker and beat would otherwise each create the queue rows on first use, at the same
    moment, and one of them fails on the unique name (seen: the demo's worker exiting)."""
    import sqlite3

    from app.core.processes import declare_embedded_queues
    from app.core.queues import ALL_QUEUES

    settings = make_settings(tmp_path, loke)
    assert settings.broker_url.startswith("sqla+sqlite")
    declare_embedded_queues(settings)
    declare_embedded_queues(settings)  # a restart finds them there
    with sqlite3.connect(tmp_path / "broker.sqlite") as broker:
        names = sorted(name for (name,) in broker.execute("SELECT name FROM kombu_queue"))
    assert names == sorted(ALL_QUEUES)
