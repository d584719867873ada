"""Whether a stopped command left anything of its process group behind, waited for on the
condition: children of a stopped leader exit a moment after it, however long that moment is on
a busy machine, and a fixed sleep is either too short (a flaky failure) or wasted."""

from __future__ import annotations

import os
import time
from pathlib import Path

GONE_WITHIN_SECONDS = 30.0  # a bound for a hung child, not an expectation of speed


def members(pgid: int) -> list[str]:
    """The processes of group `pgid` still there, as `pid command` (Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone while we looked
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{entry.name} {command.strip()}")
    return found


def wait_until_group_gone(pgid: int, timeout: float = GONE_WITHIN_SECONDS) -> list[str]:
    """Wait until no process of group `pgid` is left; returns those still there at the
    deadline (empty when the group is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        if time.monotonic() >= deadline:
            return members(pgid) or [f"group {pgid} (zombies only)"]
        time.sleep(0.05)


def assert_group_gone(pgid: int, timeout: float = GONE_WITHIN_SECONDS) -> None:
    """Fail, naming what is left, unless the whole group `pgid` exits within `timeout`."""
    left = wait_until_group_gone(pgid, timeout)
    assert not left, f"still running after the stop: {left}"
