"""Replaying dead letters in bulk: every waiting one of an organization, or those whose reason
matches, in one call, each once. On SQLite and on PostgreSQL, against the fake CRM over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.core.config import Settings
from app.core.services import Services
from app.store.models import DeadLetter
from devtools.crm import FakeCrm
from tests.conftest import AUTH
from tests.support.fake_loke import FakeLoke
from tests.unit.test_delivery import ORG, apply, connect, updated
from tests.unit.test_delivery_at_crm_pace import delivered, flush_in_threads


@pytest.fixture
def settings(settings_on_each_store: Settings) -> Settings:
    return settings_on_each_store


@pytest.fixture
def connected(client: FlaskClient, loke: FakeLoke, crm: FakeCrm) -> None:
    connect(client, loke, crm)


def test_every_dead_letter_of_an_organization_is_replayed_in_one_call(
    services: Services, client: FlaskClient, connected: None, crm: FakeCrm
) -> None:
    customers = [f"C{n:05}" for n in range(5000)]
    others = [f"D{n:02}" for n in range(10)]  # refused for another reason: not replayed
    crm.refuse_records(set(customers), reason="not today")
    crm.refuse_records(set(others), reason="invalid email")
    apply(services, *(updated(c, 1) for c in customers + others))
    flush_in_threads(services, 1)
    with services.db.transaction() as session:
        waiting = session.scalar(select(func.count()).select_from(DeadLetter))
    assert waiting == 5010
    crm.reset()
    which = {"orgId": ORG, "reason": "NOT TODAY"}
    answer: Any = client.post("/api/dead-letters/replay", json=which, headers=AUTH)
    assert answer.status_code == 202
    assert answer.json["replayed"] == 5000
    again: Any = client.post("/api/dead-letters/replay", json=which, headers=AUTH)
    assert again.json["replayed"] == 0  # replayed ones are not replayed twice
    flush_in_threads(services, 1)
    assert delivered(crm) == set(customers)
    assert crm.violations() == []


def test_a_bulk_replay_with_a_bad_filter_is_refused(client: FlaskClient) -> None:
    bad = [({"orgId": 7}, "orgId"), ({"reason": "a\x00b"}, "NUL"), ({"reason": ""}, "reason"),
           ({"org": "x"}, "org"), ([], "object")]  # fmt: skip
    for body, named in bad:
        answer: Any = client.post("/api/dead-letters/replay", json=body, headers=AUTH)
        assert answer.status_code == 400, body
        assert named in answer.json["error"]["message"], answer.json
