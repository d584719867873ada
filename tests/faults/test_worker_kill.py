"""A Celery worker process SIGKILLed three times while ~10,000 webhooks, a backfill and a list
resync flow: tasks it held are found again by the sweeps (or redelivered), and nothing is lost
or applied twice."""

from __future__ import annotations

import pytest

from tests.faults.harness import MAX_IN_FLIGHT, FaultEnv, Run, assert_clean, run_scenario

pytestmark = pytest.mark.integration


def kill_a_worker_three_times(run: Run) -> None:
    run.answers_lost = 3 * MAX_IN_FLIGHT  # a kill may take every batch the worker had on the wire
    for n, moment in enumerate((0.25, 0.5, 0.75)):
        run.sender.wait_until_settled(moment)
        victim = run.workers[n % 2]
        run.workers[n % 2] = run.env.stack.restart(victim)  # SIGKILL, then a new process
    run.healed()
    run.notes["workers killed"] = 3


def test_a_worker_sigkilled_three_times_mid_stream_loses_and_duplicates_nothing(
    fault_env: FaultEnv,
) -> None:
    report, run = run_scenario(
        fault_env,
        "worker_sigkill",
        "worker SIGKILL x3 (with backfill + list resync)",
        kill_a_worker_three_times,
        backfill_customers=3000,
        list_members=1000,
    )
    assert_clean(report, run)
