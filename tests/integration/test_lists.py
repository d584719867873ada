"""List resyncs on real parts: beat, workers, PostgreSQL, Redis, the fake LOKE, the CRM."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import requests

from app.core.queues import QueueName
from devtools.crm import FakeCrm
from tests.conftest import AUTH, destination
from tests.integration.conftest import web_url
from tests.support.fake_loke import FakeLoke, make_customer
from tests.support.processes import Stack

NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)


def connect(stack: Stack, loke: FakeLoke, crm: FakeCrm, org_id: str, **body: Any) -> None:
    loke.add_org(org_id)
    answer = requests.put(
        f"{web_url(stack)}/api/orgs/{org_id}",
        json={"destination": destination(crm), **body},
        headers=AUTH,
        timeout=10,
    )
    assert answer.status_code == 201, answer.text


def runs_per_list(database_url: str) -> dict[tuple[str, str], int]:
    with psycopg.connect(database_url) as db:
        rows = db.execute(
            "SELECT org_id, list_id, count(*) FROM list_sync_runs GROUP BY org_id, list_id"
        ).fetchall()
    return {(org, lst): n for org, lst, n in rows}


def seed_list(loke: FakeLoke, org_id: str, list_id: str, size: int) -> set[str]:
    ids = [f"{org_id}-{n:05d}" for n in range(size)]
    loke.set_customers(org_id, [make_customer(cid, NOW) for cid in ids])
    loke.set_list(org_id, list_id, f"List {list_id}", ids)
    return set(ids)


def test_beat_dispatches_resyncs_for_due_organizations_only(
    stack: Stack, loke: FakeLoke, crm: FakeCrm, database_url: str
) -> None:
    stack.env["LIST_DISPATCH_SECONDS"] = "1"
    stack.web(int(stack.env["PORT"]))
    due = seed_list(loke, "org-due", "LD", 30)
    seed_list(loke, "org-fresh", "LF", 30)
    connect(stack, loke, crm, "org-due", lists=["LD"])
    connect(stack, loke, crm, "org-fresh", lists=["LF"], listSyncIntervalSeconds=3600)
    connect(stack, loke, crm, "org-no-lists")
    # org-fresh was synced a moment ago: its interval has not passed.
    synced = requests.post(f"{web_url(stack)}/api/orgs/org-fresh/lists/sync", headers=AUTH,
                           timeout=10)  # fmt: skip
    assert synced.status_code == 202
    stack.worker("w1", queues=(QueueName.LISTS, QueueName.DELIVERY))
    stack.beat()
    assert crm.wait_for(lambda c: c.list_members.get(("org-due", "LD")) == due, timeout=60)
    runs = runs_per_list(database_url)
    assert runs[("org-due", "LD")] == 1
    assert runs[("org-fresh", "LF")] == 1  # only the manual one
    assert not any(org == "org-no-lists" for org, _ in runs)


def test_a_worker_killed_mid_resync_and_the_rerun_reach_the_same_final_state(
    stack: Stack, loke: FakeLoke, crm: FakeCrm, database_url: str
) -> None:
    stack.env["BACKFILL_STALL_SECONDS"] = "3"
    stack.web(int(stack.env["PORT"]))
    loke.page_size = 100
    members = seed_list(loke, "org-kill", "LK", 1500)
    connect(stack, loke, crm, "org-kill", lists=["LK"])
    loke.delay_next(30, 0.3)
    victim = stack.worker("w1", queues=(QueueName.LISTS, QueueName.DELIVERY))
    stack.beat()
    started = requests.post(f"{web_url(stack)}/api/orgs/org-kill/lists/sync", headers=AUTH,
                            timeout=10)  # fmt: skip
    assert started.status_code == 202

    def pages_done() -> int:
        with psycopg.connect(database_url) as db:
            row = db.execute("SELECT max(pages) FROM list_sync_runs").fetchone()
        return int(row[0] or 0) if row else 0

    assert crm.wait_for(lambda _: pages_done() >= 3, timeout=60, interval=0.2)
    victim.kill()
    with psycopg.connect(database_url) as db:
        stored = db.execute("SELECT count(*) FROM list_members").fetchone()
    assert stored == (0,), "a half-read list changes nothing stored"
    stack.worker("w2", queues=(QueueName.LISTS, QueueName.DELIVERY))
    assert crm.wait_for(lambda c: c.list_members.get(("org-kill", "LK")) == members, timeout=90)
    assert runs_per_list(database_url)[("org-kill", "LK")] == 1  # resumed, not restarted
    with psycopg.connect(database_url) as db:
        summary = db.execute("SELECT status, adds, removes FROM list_sync_runs").fetchone()
    assert summary == ("finished", 1500, 0)
    assert crm.violations() == []


def test_concurrent_triggers_and_two_beats_run_one_resync(
    stack: Stack, loke: FakeLoke, crm: FakeCrm, database_url: str
) -> None:
    stack.env["LIST_DISPATCH_SECONDS"] = "1"
    stack.web(int(stack.env["PORT"]))
    loke.page_size = 25
    members = seed_list(loke, "org-busy", "LB", 400)
    connect(stack, loke, crm, "org-busy", lists=["LB"])
    # A resync of about five seconds (16 slow pages): every trigger below lands while it runs,
    # even on a loaded machine.
    loke.delay_next(40, 0.3)
    stack.worker("w1", queues=(QueueName.LISTS, QueueName.DELIVERY))
    stack.beat()
    stack.beat()  # started by mistake: waits for the first one's lock

    def trigger(_: int) -> int:
        url = f"{web_url(stack)}/api/orgs/org-busy/lists/sync"
        return requests.post(url, headers=AUTH, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert set(pool.map(trigger, range(6))) == {202}
    assert crm.wait_for(lambda c: c.list_members.get(("org-busy", "LB")) == members, timeout=60)
    assert runs_per_list(database_url) == {("org-busy", "LB"): 1}
    adds = [op for b in crm.batches for op in b["operations"] if op["type"] == "list.add"]
    assert len(adds) == len(members)
