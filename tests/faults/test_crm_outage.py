"""The CRM answers 503 for a while (FAULTS_CRM_OUTAGE_SECONDS, 8 s by default, so CI stays
short), then 429 with `Retry-After`, then recovers: delivery pauses, backs off, honours
`Retry-After`, and catches up without a dead letter. And a CRM down for as many backoff caps as
two hours are of the production cap (600 s) ends the same way: an outage is a pause."""

from __future__ import annotations

import os
import time

import pytest

from tests.faults.harness import MAX_IN_FLIGHT, FaultEnv, Run, assert_clean, run_scenario

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = float(os.environ.get("FAULTS_CRM_OUTAGE_SECONDS", "8"))
THROTTLED = 5  # 429 answers after the outage
RETRY_AFTER = 1


def outage_then_throttling(run: Run) -> None:
    crm = run.env.crm
    run.sender.wait_until_settled(0.1)
    crm.fail_for(OUTAGE_SECONDS, status=503)
    crm.fail_next(THROTTLED, status=429, retry_after=str(RETRY_AFTER))  # after the outage
    deadline = time.monotonic() + OUTAGE_SECONDS + 60
    while sum(1 for _, status, _ in crm.answered if status == 429) < THROTTLED:
        assert time.monotonic() < deadline, "delivery never came back after the outage"
        time.sleep(0.1)
    run.healed()
    run.notes["CRM 503 s"] = OUTAGE_SECONDS
    run.notes["CRM 429s"] = THROTTLED


def test_a_crm_outage_then_throttling_is_ridden_out_without_loss(fault_env: FaultEnv) -> None:
    report, run = run_scenario(fault_env, "crm_outage", "CRM 503, then 429 + Retry-After",
                               outage_then_throttling)  # fmt: skip
    assert_clean(report, run)
    crm = run.env.crm
    assert any(status == 503 for _, status, _ in crm.answered)
    throttled_at = [at for at, status, _ in crm.answered if status == 429]
    # Within Retry-After of a 429 at most the batches claimed before the service heard of it
    # arrive (one per sender), where a 50-a-second destination would send dozens.
    for at in throttled_at:
        arrivals = [t for t in crm.arrived if at < t < at + RETRY_AFTER * 0.9]
        assert len(arrivals) < MAX_IN_FLIGHT, (at, arrivals)


# Two hours over the production backoff cap (600 s) is twelve caps; here twelve of 2.5 s.
LONG_CAP_SECONDS = 2.5
LONG_OUTAGE_SECONDS = 12 * LONG_CAP_SECONDS


def long_outage(run: Run) -> None:
    run.sender.wait_until_settled(0.1)
    run.env.crm.fail_for(LONG_OUTAGE_SECONDS, status=503)
    time.sleep(LONG_OUTAGE_SECONDS)
    run.healed()
    run.notes["CRM down s"] = LONG_OUTAGE_SECONDS


def test_a_crm_down_for_twelve_backoff_caps_ends_in_delivery_not_dead_letters(
    fault_env: FaultEnv,
) -> None:
    fault_env.stack.env["DELIVERY_BACKOFF_MAX_SECONDS"] = str(LONG_CAP_SECONDS)
    report, run = run_scenario(fault_env, "crm_long_outage", "CRM down 12 backoff caps",
                               long_outage)  # fmt: skip
    assert_clean(report, run)  # every item delivered, no dead letter
