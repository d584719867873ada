"""The suite's workload delivered to a fake HubSpot portal (destination type `hubspot`, each call
answered in 0.1-0.3 s, 100 calls per 10 s) while HubSpot, in turn: answers every call 429
TEN_SECONDLY_ROLLING for a few seconds, three times; reaches the account's daily limit, which
closes the account until HUBSPOT_DAILY_RECHECK_SECONDS (4 s here) and is reset meanwhile; and
rejects the access token (401) for a few seconds before it is restored. Delivery rides each out
by itself: every customer ends as exactly one contact with LOKE's newest values, every payment
as one order of its contact, with no dead letter.

Each fault starts with a wave of profile updates of 300 customers, so that delivery has work
when it strikes whatever the stream's pace (the waves' values are LOKE's newest)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.conftest import AUTH, HUBSPOT_TOKEN
from tests.faults.harness import MAX_IN_FLIGHT, FaultEnv, Run, assert_clean, run_scenario
from tests.faults.hubspot import ACCOUNT, HUBSPOT_CLOCKS, PER_TEN_SECONDS, successes
from tests.faults.sender import LokeSender
from tests.support.fake_hubspot import FakeHubSpot
from tests.support.fake_loke import customer_event, make_customer
from tests.support.streams import START, iso

pytestmark = pytest.mark.integration

STORMS = 3
STORM_SECONDS = 2.5
RECHECK_SECONDS = float(HUBSPOT_CLOCKS["HUBSPOT_DAILY_RECHECK_SECONDS"])
DAILY_HEADROOM = 3  # calls the portal still takes once its daily limit is set
REVOKED_SECONDS = 4.0
WAVE = 300  # customers updated in LOKE as each fault starts
BACKFILL = 500
LIST_MEMBERS = 200
RESUME_TIMEOUT = 30  # a fault healed -> HubSpot takes a call again (backoff caps are 5 s)


def delivery_status(run: Run) -> dict[str, Any]:
    url = f"{run.env.web_url}/api/orgs/{run.org}"
    answer = requests.get(url, headers=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()["delivery"]
    return status


def dead_letters(run: Run) -> list[dict[str, Any]]:
    url = f"{run.env.web_url}/api/dead-letters?orgId={run.org}&limit=1000"
    letters: list[dict[str, Any]] = requests.get(url, headers=AUTH, timeout=10).json()[
        "deadLetters"
    ]
    return letters


def wait_for_status(
    run: Run, ready: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30
) -> dict[str, Any]:
    """Poll the organization's delivery status until `ready(status)`; that status."""
    deadline = time.monotonic() + timeout
    while not ready(status := delivery_status(run)):
        assert time.monotonic() < deadline, f"delivery never {what}: {status}"
        time.sleep(0.1)
    return status


def wait_for_a_call(fake: FakeHubSpot, what: str) -> float:
    """Wait until HubSpot takes (answers 2xx) a call it has not yet; the seconds it took."""
    began, mark = time.monotonic(), successes(fake)
    while successes(fake) <= mark:
        assert time.monotonic() - began < RESUME_TIMEOUT, f"delivery never resumed after {what}"
        time.sleep(0.05)
    return round(time.monotonic() - began, 1)


def wave(run: Run, number: int) -> LokeSender:
    """LOKE updates `WAVE` customers' profiles (newer than the stream's): the truth moves."""
    updated = START + dt.timedelta(days=2, hours=number)
    customers = [f"CUST{n:06d}" for n in range(number * WAVE, (number + 1) * WAVE)]
    events = [
        customer_event("customer.updated", run.org,
                       make_customer(cid, updated, firstName=f"Wave{number}"))
        for cid in customers
    ]  # fmt: skip
    run.expected.truth.contacts.update(dict.fromkeys(customers, iso(updated)))
    secret = run.env.loke.secret_for(run.org)
    return LokeSender(run.env.port, run.org, events, secret, threads=4).start()


def storms(run: Run, fake: FakeHubSpot) -> None:
    """(1) 429 TEN_SECONDLY_ROLLING to every call for STORM_SECONDS, three times."""
    sender = wave(run, 0)
    resumed = []
    for _ in range(STORMS):
        refused = fake.requests.rate_limited["TEN_SECONDLY_ROLLING"]
        fake.storm(STORM_SECONDS)
        time.sleep(STORM_SECONDS)
        assert fake.requests.rate_limited["TEN_SECONDLY_ROLLING"] > refused, "no call in a storm"
        resumed.append(wait_for_a_call(fake, "a 429 storm"))
    assert sender.wait().accepted == WAVE
    run.notes["429 storms"] = f"{STORMS}x{STORM_SECONDS:g}s"
    run.notes["resumed after storm s"] = "/".join(f"{s:g}" for s in resumed)


def daily_limit(run: Run, fake: FakeHubSpot) -> None:
    """(2) The account's daily limit reached: closed until the recheck; HubSpot's day starts
    again meanwhile, and delivery resumes once the recheck comes."""
    sender = wave(run, 1)
    used = fake.state()["accounts"][ACCOUNT]["dailyUsed"]
    fake.set_limits(PER_TEN_SECONDS, daily=used + DAILY_HEADROOM)
    began = time.monotonic()
    status = wait_for_status(
        run,
        lambda d: d["state"] == "throttled" and "daily limit" in (d["throttleReason"] or ""),
        "showed the daily limit",
    )
    closed_at = dt.datetime.now(dt.UTC)
    until = dt.datetime.fromisoformat(status["throttledUntil"])
    assert until - closed_at <= dt.timedelta(seconds=RECHECK_SECONDS + 1), status
    # Closed means closed: no new batch goes out (the calls of those already on the wire may).
    calls = fake.requests.total
    time.sleep(max((until - dt.datetime.now(dt.UTC)).total_seconds() - 0.5, 0))
    calls_while_closed = fake.requests.total - calls
    assert calls_while_closed <= 2 * MAX_IN_FLIGHT, calls_while_closed
    fake.reset_daily()
    fake.set_limits(PER_TEN_SECONDS, daily=None)
    resumed = wait_for_a_call(fake, "the daily limit was reset")
    assert dt.datetime.now(dt.UTC) >= until - dt.timedelta(seconds=0.2), (
        "resumed before the recheck"
    )
    assert sender.wait().accepted == WAVE
    run.notes["daily limit: closed s"] = round(time.monotonic() - began, 1)
    run.notes["calls while closed"] = calls_while_closed
    run.notes["resumed after reset s"] = resumed


def token_revoked(run: Run, fake: FakeHubSpot) -> None:
    """(3) The access token rejected (401) for REVOKED_SECONDS, then restored: delivery shows
    it, makes no dead letter, and resumes by itself."""
    sender = wave(run, 2)
    fake.revoke(HUBSPOT_TOKEN)
    status = wait_for_status(run, lambda d: d["state"] == "tokenRejected", "showed the token")
    assert "token rejected" in (status["lastError"] or ""), status
    time.sleep(REVOKED_SECONDS)
    assert delivery_status(run)["state"] == "tokenRejected"
    assert dead_letters(run) == []
    fake.restore(HUBSPOT_TOKEN)
    resumed = wait_for_a_call(fake, "the token was restored")
    wait_for_status(run, lambda d: d["state"] == "ok", "came back to ok")
    assert sender.wait().accepted == WAVE
    run.notes["token revoked s"] = REVOKED_SECONDS
    run.notes["resumed after restore s"] = resumed


def hubspot_faults(run: Run) -> None:
    fake = run.env.hubspot
    assert fake is not None
    timeline = []
    run.sender.wait_until_settled(0.1)
    for name, fault in (("storms", storms), ("daily", daily_limit), ("token", token_revoked)):
        settled = run.sender.settled() / len(run.sender.payloads)
        timeline.append(f"{name} {time.monotonic() - run.started_at:.0f}s ({settled:.0%})")
        fault(run, fake)
    run.healed()
    timeline.append(f"healed {run.recovered_at - run.started_at:.0f}s")
    run.notes["faults at (stream settled)"] = ", ".join(timeline)


def test_hubspot_storms_daily_limit_and_a_revoked_token_lose_nothing(
    hubspot_fault_env: FaultEnv,
) -> None:
    report, run = run_scenario(
        hubspot_fault_env,
        "hubspot_faults",
        "HubSpot: 429 storms, daily limit, token revoked",
        hubspot_faults,
        backfill_customers=BACKFILL,
        list_members=LIST_MEMBERS,
    )
    assert_clean(report, run)  # one contact per customer with LOKE's newest values, no letter
    # The portal may hold the truth while the last batch is still settling (its associations).
    status = wait_for_status(run, lambda d: d["backlog"] == 0, "emptied its backlog", timeout=20)
    assert (status["state"], status["conflicts"], status["deadLetters"]) == ("ok", 0, 0), status
    assert report.total_seconds < 120, report
