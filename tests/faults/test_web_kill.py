"""Web processes killed while requests are in flight: first one gunicorn worker (its master
starts another), then the whole web service, started again on the same port. Requests cut off
get no answer; LOKE retries them, and a body already stored is acknowledged as a duplicate."""

from __future__ import annotations

import os
import signal

import pytest

from tests.faults.harness import FaultEnv, Run, assert_clean, run_scenario

pytestmark = pytest.mark.integration


def kill_web_processes(run: Run) -> None:
    run.sender.wait_until_settled(0.3)
    children = run.web.child_pids()
    assert children, "gunicorn has workers"
    os.kill(children[0], signal.SIGKILL)
    run.sender.wait_until_settled(0.6)
    run.web = run.env.stack.restart(run.web)  # SIGKILL master and workers, start again
    run.healed()
    run.notes["web processes killed"] = 1 + len(children)


def test_web_processes_killed_with_requests_in_flight_lose_nothing(fault_env: FaultEnv) -> None:
    report, run = run_scenario(fault_env, "web_kill", "web worker, then whole web SIGKILLed",
                               kill_web_processes)  # fmt: skip
    assert_clean(report, run)
    assert run.sender.result.answers[0] > 0, "some requests were cut off in flight"
