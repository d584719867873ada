"""`loke-sync` commands call the same functions as the API (embedded SQLite, fake LOKE)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli.main import main
from app.core.config import load_settings
from app.factory import create_app
from app.store.migrate import upgrade
from devtools.crm import FakeCrm
from tests.conftest import CRM_SECRET, make_settings, services_of
from tests.support.cli import embedded_environment, use_environment
from tests.support.fake_loke import FakeLoke


@pytest.fixture
def runner(tmp_path: Path, loke: FakeLoke, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    use_environment(monkeypatch, embedded_environment(tmp_path, loke))
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
    listed = runner.invoke(main, ["orgs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [status] = json.loads(listed.output)["orgs"]
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
    assert refused.exit_code == 1
    assert refused.output.startswith("Error: organization org-d chose no lists to sync: ")
    unknown = runner.invoke(main, ["lists", "sync", "nobody"])
    assert unknown.output == "Error: organization nobody is not known\n"
    runner.invoke(main, ["orgs", "disconnect", "org-d"])
    gone = runner.invoke(main, ["lists", "sync", "org-d"])
    assert (gone.exit_code, gone.output) == (1, "Error: organization org-d is not connected\n")


def test_orgs_list_is_a_table_with_aligned_columns_and_the_apis_json_with_json(
    runner: CliRunner, loke: FakeLoke, crm: FakeCrm
) -> None:
    for org_id, name in (("org-e", "Eatery"), ("org-long-identifier", None)):
        loke.add_org(org_id, name)
        connected = runner.invoke(
            main, ["orgs", "connect", org_id, "--url", crm.url, "--secret", CRM_SECRET]
        )
        assert connected.exit_code == 0, connected.output
    table = runner.invoke(main, ["orgs", "list"])
    assert table.exit_code == 0, table.output
    header, *rows = table.output.splitlines()
    assert header.split() == [
        "ID", "NAME", "CONNECTED", "SUBSCRIPTION", "BACKFILL", "CUSTOMERS", "DELIVERY",
        "BACKLOG", "LAG", "DEAD", "LETTERS",
    ]  # fmt: skip
    assert [row.split()[0] for row in rows] == ["org-e", "org-long-identifier"]
    for row in rows:
        # Left-aligned text starts under its heading; numbers end under theirs.
        after_name = row[header.index("CONNECTED") :].split()
        assert after_name == ["yes", "ok", "running", "0", "ok", "0", "0", "s", "0"]
        assert len(row) == len(header)  # DEAD LETTERS' count ends where its heading does
    app = create_app(load_settings())  # the API, on the same database as the commands
    answer = app.test_client().get("/api/orgs", headers={"Authorization": "Bearer cli-admin-token"})
    services_of(app).db.dispose()
    scripted = json.loads(runner.invoke(main, ["orgs", "list", "--json"]).output)["orgs"]
    served = answer.get_json()["orgs"]
    assert [org["id"] for org in scripted] == [org["id"] for org in served]
    assert [sorted(org) for org in scripted] == [sorted(org) for org in served]


def test_empty_results_say_so(runner: CliRunner) -> None:
    expected = {
        ("orgs", "list"): "no organizations yet: loke-sync orgs discover, then orgs connect\n",
        ("orgs", "list", "--json"): '{\n  "orgs": []\n}\n',
        ("orgs", "discover"): "no organization has installed the add-on at LOKE yet\n",
        ("dead-letters", "list"): "no dead letters\n",
        ("dead-letters", "list", "--org", "org-z"): "no dead letters of org-z\n",
        ("dead-letters", "replay", "--all"): "no dead letters match\n",
    }
    for command, said in expected.items():
        result = runner.invoke(main, list(command))
        assert (result.exit_code, result.output) == (0, said), command


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
