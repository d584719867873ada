"""A connect cut short (the process dies between committing the connect and subscribing, or
between subscribing and starting the backfill; or LOKE refused the subscription) does not
leave the organization connected with no subscription or no backfill: the next PUT finishes
it, and the sweep starts a backfill that is missing."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.backfill import runs as backfill_runs
from app.core.services import Services
from app.core.task_names import BACKFILL_PAGE
from app.orgs import connect as org_connect
from app.store.models import BackfillRun
from devtools.crm import FakeCrm
from tests.conftest import AUTH, RecordingDispatcher, destination
from tests.support.fake_loke import FakeLoke

ORG = "org-recovered"
SUBSCRIPTION = (ORG, "loke-crm-sync")


class ProcessDied(BaseException):
    """What a killed process leaves: nothing after this point ran (not an Exception, so that
    no handler on the way turns it into an answer)."""


def dies_once(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
    """The next call of `module.name` kills the process before it does anything."""
    real = getattr(module, name)

    def fake(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(module, name, real)
        raise ProcessDied(name)

    monkeypatch.setattr(module, name, fake)


def put(client: FlaskClient, crm: FakeCrm) -> Any:
    return client.put(f"/api/orgs/{ORG}", json={"destination": destination(crm)}, headers=AUTH)


def backfills(services: Services) -> list[BackfillRun]:
    with services.db.transaction() as session:
        return list(session.scalars(select(BackfillRun).where(BackfillRun.org_id == ORG)))


def test_a_crash_between_subscribing_and_the_backfill_is_finished_by_the_next_put(
    client: FlaskClient,
    services: Services,
    loke: FakeLoke,
    crm: FakeCrm,
    dispatcher: RecordingDispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loke.add_org(ORG)
    dies_once(monkeypatch, backfill_runs, "start")
    with pytest.raises(ProcessDied):
        put(client, crm)
    assert SUBSCRIPTION in loke.subscriptions
    assert backfills(services) == []

    answer = put(client, crm)

    assert answer.status_code == 200  # connected already: an update
    assert [run.status for run in backfills(services)] == ["running"]
    assert dispatcher.names().count(BACKFILL_PAGE) == 1
    assert put(client, crm).status_code == 200
    assert dispatcher.names().count(BACKFILL_PAGE) == 1  # once: one run was enough


def test_a_crash_before_subscribing_is_finished_by_the_next_put(
    client: FlaskClient,
    services: Services,
    loke: FakeLoke,
    crm: FakeCrm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loke.add_org(ORG)
    dies_once(monkeypatch, org_connect, "subscribe")
    with pytest.raises(ProcessDied):
        put(client, crm)
    assert loke.subscriptions == {}

    answer: Any = put(client, crm)

    assert answer.json["subscription"]["status"] == "ok"
    assert SUBSCRIPTION in loke.subscriptions
    assert len(backfills(services)) == 1


def test_a_subscription_loke_refused_is_put_again_by_the_next_put(
    client: FlaskClient, services: Services, loke: FakeLoke, crm: FakeCrm
) -> None:
    loke.add_org(ORG)
    assert put(client, crm).status_code == 201
    loke.fail_next(1, status=403)  # refused later: a reset, or the daily check's repair
    reset: Any = client.post(f"/api/orgs/{ORG}/subscription", headers=AUTH)
    assert reset.status_code == 502
    assert reset.json["status"] == "error"
    assert len(backfills(services)) == 1

    second: Any = put(client, crm)

    assert second.status_code == 200  # connected all along: an update
    assert second.json["subscription"] == {**second.json["subscription"], "status": "ok"}
    assert SUBSCRIPTION in loke.subscriptions
    third: Any = put(client, crm)  # all is well: LOKE is not asked again
    assert third.status_code == 200
    assert [m for m, t in loke.requests if "/webhooks/" in t] == ["PUT", "PUT", "PUT"]


def test_the_sweep_starts_the_backfill_a_crash_left_out(
    client: FlaskClient,
    services: Services,
    loke: FakeLoke,
    crm: FakeCrm,
    dispatcher: RecordingDispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loke.add_org(ORG)
    dies_once(monkeypatch, backfill_runs, "start")
    with pytest.raises(ProcessDied):
        put(client, crm)

    assert org_connect.start_missing_backfills(services) == [ORG]

    assert [run.status for run in backfills(services)] == ["running"]
    assert dispatcher.names().count(BACKFILL_PAGE) == 1
    assert org_connect.start_missing_backfills(services) == []
