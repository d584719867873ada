"""One fault scenario from start to figures: processes up, organization connected, a signed
stream sent LOKE-style (plus a backfill and a list resync where asked), the fault injected by
the test's own function while the stream flows, then the wait until the CRM holds the truth.

The CRM is the recording one (`FakeCrm`, destination type `http`) unless the environment has a
fake HubSpot portal (`FaultEnv.hubspot`): then the organization is connected to that, and the
figures are read from its records (see `tests/faults/hubspot.py`)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from app.core.queues import ALL_QUEUES
from devtools.crm import FakeCrm
from tests.conftest import AUTH, destination
from tests.faults import hubspot
from tests.faults.report import Expected, FaultReport, compare
from tests.faults.sender import Delivery, LokeSender
from tests.support.fake_hubspot import FakeHubSpot
from tests.support.fake_loke import FakeLoke, make_customer
from tests.support.private_services import PrivatePostgres, PrivateRedis
from tests.support.processes import Service, Stack
from tests.support.streams import Truth, make_stream, mismatches

# ~10.2 events per customer (created, 4 updates, 3 statistics, 1 payment, 30% refunds, 10%
# duplicates): 980 customers make the issue's ~10,000 events.
CUSTOMERS = 980
DRAIN_TIMEOUT = 150
LIST_ID = "L-faults"
LIST_NAME = "Fault suite"
BATCH_SIZE = 100
MAX_IN_FLIGHT = 4  # batches of the organization on the wire at once
BACKFILL_T0 = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC)


@dataclass
class FaultEnv:
    """What a scenario runs on: its processes, fakes, database and the private servers."""

    stack: Stack
    loke: FakeLoke
    crm: FakeCrm
    database_url: str
    redis: PrivateRedis
    postgres: PrivatePostgres
    hubspot: FakeHubSpot | None = None  # set: the organization delivers there, not to `crm`

    @property
    def port(self) -> int:
        return int(self.stack.env["PORT"])

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Run:
    """A scenario in progress, handed to the fault function."""

    env: FaultEnv
    org: str
    sender: LokeSender
    expected: Expected
    web: Service
    workers: list[Service]
    beat: Service
    started_at: float = field(default_factory=time.monotonic)  # just before the stream starts
    recovered_at: float = 0.0  # time.monotonic() when the fault was healed
    answers_lost: int = 0  # batches whose answer or settle the fault may lose (see assert_clean)
    beat_output_at_heal: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def healed(self) -> None:
        self.recovered_at = time.monotonic()
        self.beat_output_at_heal = len(self.beat.output())

    def beat_scheduled_since_healed(self) -> bool:
        return "Sending due task" in self.beat.output()[self.beat_output_at_heal :]


def run_scenario(
    env: FaultEnv,
    scenario: str,
    fault: str,
    inject: Callable[[Run], None],
    backfill_customers: int = 0,
    list_members: int = 0,
    refused: frozenset[str] = frozenset(),
) -> tuple[FaultReport, Run]:
    """Run everything, call `inject(run)` once the stream is flowing, wait for the CRM and
    return the figures (also written to artifacts/faults/<scenario>.json). The customers in
    `refused` are refused by the CRM record by record: they are not expected there."""
    org = f"org-{scenario.replace('_', '-')}"
    web = env.stack.web(env.port)
    workers = env.stack.workers(["w1", "w2"], queues=ALL_QUEUES)
    beat = env.stack.beat()
    expected = _seed_loke(env.loke, org, backfill_customers, list_members)
    secret = _connect(env, org, lists=[LIST_ID] if list_members else [])
    stream = make_stream(org, customers=CUSTOMERS)
    expected.truth.statistics.update(stream.truth.statistics)
    expected.truth.contacts.update(stream.truth.contacts)
    expected.truth.payments.update(stream.truth.payments)
    expected.truth.payer.update(stream.truth.payer)
    expected.refuse(refused)
    assert not (refused and env.hubspot), "refusing records is the recording CRM's fault"
    env.crm.refuse_records(set(refused), reason="invalid email")
    sender = LokeSender(env.port, org, stream.events, secret)
    run = Run(env, org, sender, expected, web, workers, beat)
    began = time.monotonic()
    sender.start()
    inject(run)
    if not run.recovered_at:
        run.healed()
    delivery = sender.wait()
    done = _wait_until_settled(env, expected, org)
    matched_at = time.monotonic()
    reapplied: int | None = None  # HubSpot's records keep no trace of either
    resent: int | None = None
    if env.hubspot is not None:
        portal = hubspot.Portal.read(env.hubspot)
        counts = hubspot.compare(expected, portal, {LIST_ID: LIST_NAME})
        notes = {**run.notes, **hubspot.notes(env.hubspot), **_answers(delivery)}
    else:
        counts = compare(expected, org, env.crm)
        reapplied, resent = counts.pop("reapplied"), len(env.crm.duplicate_batch_ids)
        notes = {**run.notes, **_answers(delivery)}
    report = FaultReport(
        scenario=scenario,
        fault=fault,
        sent=delivery.sent,
        accepted=delivery.accepted,
        expected=expected.items(),
        reapplied=reapplied,
        resent_batches=resent,
        drain_seconds=round(max(0.0, matched_at - max(run.recovered_at, delivery.finished_at)), 1)
        if done
        else float("nan"),
        total_seconds=round(matched_at - began, 1),
        notes=notes,
        **counts,
    )
    report.write()
    return report, run


def assert_clean(report: FaultReport, run: Run) -> None:
    """The guarantees every scenario must keep, with the processes' logs when one is broken."""
    env = run.env
    wrong = _problems(env, run.expected, run.org)
    logs = "\n".join(f"--- {s.name}\n{s.log_tail(15)}" for s in env.stack.services)
    assert report.accepted == report.sent, f"{report}\n{logs}"
    assert (report.lost, report.stale) == (0, 0), f"{report}\nfirst: {wrong[:5]}\n{logs}"
    assert report.duplicates == 0, report
    if env.hubspot is not None:
        assert env.hubspot.server_errors == [], env.hubspot.server_errors[:1]  # the fake's bugs
    else:
        assert env.crm.violations() == [], env.crm.violations()[:5]
        # A batch whose answer or settle was lost (a killed worker, a crashed database, an
        # answer past the deadline) is sent again when its lease ends: under the same
        # Idempotency-Key if its entries did not change (the CRM does not apply it twice), else
        # as a new batch whose unchanged operations the CRM applies again. No other fault may
        # cause either.
        assert (report.resent_batches or 0) <= run.answers_lost, report
        assert (report.reapplied or 0) <= run.answers_lost * BATCH_SIZE, report
    # Beat must outlive every fault and keep scheduling: its sweeps are what find lost work.
    assert run.beat.process.poll() is None, f"beat exited:\n{run.beat.log_tail()}"
    deadline = time.monotonic() + 10
    while not run.beat_scheduled_since_healed():
        assert time.monotonic() < deadline, f"beat sends nothing:\n{run.beat.log_tail()}"
        time.sleep(0.2)
    letters = requests.get(
        f"{env.web_url}/api/dead-letters?orgId={run.org}&limit=1000",
        headers=AUTH, timeout=10,
    ).json()["deadLetters"]  # fmt: skip
    assert {letter["kind"] for letter in letters} <= {"operation"}, letters[:3]
    dead = {op["customerId"] for letter in letters for op in letter["detail"]["operations"]}
    assert dead == run.expected.refused, letters[:3]


def _seed_loke(loke: FakeLoke, org: str, customers: int, members: int) -> Expected:
    """Customers for the backfill (ids apart from the stream's) and a list of some of them."""
    expected = Expected(Truth())
    loke.page_size = 500
    loke.add_org(org)
    seeded = [
        make_customer(f"B{n:06d}", BACKFILL_T0 + dt.timedelta(seconds=n)) for n in range(customers)
    ]
    loke.set_customers(org, seeded)
    expected.truth.contacts.update({c["id"]: c["updatedAt"] for c in seeded})
    if members:
        ids = [c["id"] for c in seeded[:members]]
        loke.set_list(org, LIST_ID, LIST_NAME, ids)
        expected.lists[LIST_ID] = set(ids)
    return expected


def _connect(env: FaultEnv, org: str, lists: list[str]) -> str:
    """Connect as an operator would (this starts the backfill); start the list resync now."""
    if env.hubspot is not None:
        destination_config = hubspot.destination(env.hubspot, max_in_flight=MAX_IN_FLIGHT)
    else:
        destination_config = destination(
            env.crm, batchSize=BATCH_SIZE, maxConcurrentRequests=MAX_IN_FLIGHT
        )
    body = {"destination": destination_config, "lists": lists}
    answer = requests.put(f"{env.web_url}/api/orgs/{org}", json=body, headers=AUTH, timeout=10)
    assert answer.status_code == 201, answer.text
    if lists:
        url = f"{env.web_url}/api/orgs/{org}/lists/sync"
        assert requests.post(url, headers=AUTH, timeout=10).status_code == 202
    return env.loke.secret_for(org)


def _wait_until_settled(env: FaultEnv, expected: Expected, org: str) -> bool:
    """Wait (DRAIN_TIMEOUT at most) until the CRM holds the truth; whether it came to."""
    if env.hubspot is None:
        return env.crm.wait_for(
            lambda c: _settled(expected, org, c), timeout=DRAIN_TIMEOUT, interval=0.25
        )
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while _problems(env, expected, org):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)  # a read of the portal copies every record: not too often
    return True


def _problems(env: FaultEnv, expected: Expected, org: str) -> list[str]:
    """What the CRM gets wrong, as readable lines."""
    if env.hubspot is not None:
        portal = hubspot.Portal.read(env.hubspot)
        return hubspot.problems(expected, portal, {LIST_ID: LIST_NAME})
    return mismatches(expected.truth, org, env.crm.contacts, env.crm.payments)


def _settled(expected: Expected, org: str, crm: FakeCrm) -> bool:
    if mismatches(expected.truth, org, crm.contacts, crm.payments):
        return False
    return all(crm.list_members.get((org, lst)) == ids for lst, ids in expected.lists.items())


def _answers(delivery: Delivery) -> dict[str, int]:
    """The receiver's answers other than 202 that LOKE retried, for the notes column."""
    notes = {f"webhook {code}s": n for code, n in sorted(delivery.answers.items()) if code != 202}
    if 0 in delivery.answers:
        notes["webhooks unanswered"] = notes.pop("webhook 0s")
    return notes
