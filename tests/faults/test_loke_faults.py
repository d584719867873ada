"""The fake LOKE answers 429 (with `Retry-After`) and 500, and stalls past the client's
timeout, again and again during a backfill and a list resync while webhooks flow. Every page is
retried, the backfill finishes, and every backfilled customer and list member reaches the CRM."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.conftest import AUTH
from tests.faults.harness import FaultEnv, Run, assert_clean, run_scenario

pytestmark = pytest.mark.integration

ROUNDS = 6
STALL_SECONDS = 2.5  # > LOKE_TIMEOUT_SECONDS (1.5) in the suite's environment
BACKFILL = 5000  # 10 pages of 500


def org_status(run: Run) -> dict[str, Any]:
    url = f"{run.env.web_url}/api/orgs/{run.org}"
    status: dict[str, Any] = requests.get(url, headers=AUTH, timeout=10).json()
    return status


def failing_loke(run: Run) -> None:
    loke = run.env.loke
    for _ in range(ROUNDS):
        loke.fail_next(1, status=429, retry_after="1")
        loke.fail_next(1, status=500)
        loke.delay_next(1, STALL_SECONDS)
        time.sleep(1.0)
    deadline = time.monotonic() + 120
    while (org_status(run)["backfill"] or {}).get("status") != "finished":
        assert time.monotonic() < deadline, org_status(run)["backfill"]
        time.sleep(0.3)
    run.healed()
    run.notes["LOKE 429/500/stalls"] = f"{ROUNDS}/{ROUNDS}/{ROUNDS}"


def test_loke_failing_and_stalling_during_a_backfill_loses_nothing(fault_env: FaultEnv) -> None:
    report, run = run_scenario(
        fault_env,
        "loke_faults",
        "LOKE 429/500/timeouts during backfill + list resync",
        failing_loke,
        backfill_customers=BACKFILL,
        list_members=1000,
    )
    assert_clean(report, run)
    pages = [t for m, t in run.env.loke.requests if m == "GET" and "/customers" in t]
    assert len(pages) > BACKFILL // 500, "pages were retried"
    assert org_status(run)["backfill"]["customers"] == BACKFILL
