"""PostgreSQL crashes (immediate shutdown) mid-stream and comes back a few seconds later. While
it is down the receiver answers 503, LOKE's retries of those deliveries succeed afterwards, and
workers retry the transactions that were cut off."""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import MAX_IN_FLIGHT, FaultEnv, Run, assert_clean, run_scenario

pytestmark = pytest.mark.integration

POSTGRES_DOWN_SECONDS = 3.0


def crash_postgres(run: Run) -> None:
    run.answers_lost = MAX_IN_FLIGHT  # the settles of the batches on the wire at the crash
    run.sender.wait_until_settled(0.4)
    run.env.postgres.stop(mode="immediate")
    time.sleep(POSTGRES_DOWN_SECONDS)
    run.env.postgres.start()
    run.healed()
    run.notes["PostgreSQL down s"] = POSTGRES_DOWN_SECONDS


def test_postgres_restarted_mid_stream_answers_503_then_loses_nothing(
    fault_env: FaultEnv,
) -> None:
    report, run = run_scenario(fault_env, "postgres_restart", "PostgreSQL crash + restart",
                               crash_postgres)  # fmt: skip
    assert_clean(report, run)
    assert run.sender.result.answers[503] > 0, "the receiver answered 503 while it was down"
