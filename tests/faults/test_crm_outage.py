"""The CRM answers 503 for a while (two minutes in the issue; FAULTS_CRM_OUTAGE_SECONDS, 8 s by
default, so CI stays short), then 429 with `Retry-After`, then recovers. Delivery pauses, backs
off, honours `Retry-After`, and catches up without a dead letter."""

from __future__ import annotations

import os
import time
from itertools import pairwise

import pytest

from tests.faults.harness import FaultEnv, Run, assert_clean, run_scenario

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
    answered = list(run.env.crm.answered)
    assert any(status == 503 for _, status, _ in answered)
    for (at, status, _), (next_at, _, _) in pairwise(answered):
        if status == 429:
            assert next_at - at >= RETRY_AFTER * 0.9, "Retry-After was honoured"
