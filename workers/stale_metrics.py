"""Emptying a metrics directory of what dead processes left there, before a process tree starts.

prometheus_client's multiprocess mode keeps one file per process and kind (`counter_<pid>.db`,
`gauge_livesum_<pid>.db`, ...) and sums them all at every scrape. Files of processes from before
a restart would keep adding their old counts, and a new process that happens to get an old pid
(containers hand out the same few) would carry on from its predecessor's counters. A directory
can also be shared with the other processes of the machine (a Celery worker beside gunicorn), so
only the files of processes that are no longer running are removed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

METRICS_FILE = re.compile(r"[a-z]+(?:_[a-z]+)*_(\d+)\.db")


def remove_dead_processes_files(directory: str) -> list[Path]:
    """Remove the metrics files of processes that no longer run; returns what was removed."""
    removed = []
    for path in Path(directory).iterdir():
        match = METRICS_FILE.fullmatch(path.name)
        if match and not _running(int(match.group(1))):
            path.unlink(missing_ok=True)  # another starting tree may have removed it first
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
