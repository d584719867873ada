"""The check that a stopped command left nothing behind waits on the condition, not a fixed time:
a child may outlive its leader by longer than any fixed sleep on a busy machine."""

from __future__ import annotations

import subprocess
import sys

from tests.support.process_groups import wait_until_group_gone


def test_a_child_that_outlives_its_leader_is_waited_for() -> None:
    # The leader exits at once; its child a second later (the old check, a fixed half-second
    # sleep then `killpg(pgid, 0)`, found it still there and failed).
    leader = subprocess.Popen(["sh", "-c", "sleep 1 & exit 0"], start_new_session=True)
    assert leader.wait(timeout=10) == 0
    assert wait_until_group_gone(leader.pid) == []


def test_what_is_still_running_at_the_deadline_is_named() -> None:
    stuck = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    try:
        [left] = wait_until_group_gone(stuck.pid, timeout=0.2)
        assert left.startswith(f"{stuck.pid} ")
        assert "time.sleep(120)" in left
    finally:
        stuck.kill()
        stuck.wait(timeout=10)
    assert wait_until_group_gone(stuck.pid) == []
