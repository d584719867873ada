"""`loke-sync demo` as a subprocess for tests: its own session on free ports, waited on until the
CRM matches LOKE, stopped with SIGINT (shared by tests/integration/ and tests/browser/)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support.process_groups import assert_group_gone
from tests.support.processes import free_port

BOUND_SECONDS = 60


@dataclass(frozen=True)
class Demo:
    """A running (or stopped) `loke-sync demo` and where to reach its parts."""

    process: subprocess.Popen[bytes]
    workdir: Path
    web: int
    sandbox: int
    crm: int

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web}"

    @property
    def crm_url(self) -> str:
        return f"http://127.0.0.1:{self.crm}/demo/crm"

    @property
    def fidelity_url(self) -> str:
        return f"{self.crm_url}/fidelity.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / "demo.log"

    def output(self) -> str:
        """What the demo printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def admin_token(self) -> str:
        """The dashboard's admin token, as the demo prints it once the organization is connected."""
        found = re.search(r"\(admin token: ([\w-]+)\)", self.output())
        assert found is not None, "the demo printed no admin token:\n" + self.output()[-3000:]
        return found.group(1)


@contextmanager
def running_demo(
    workdir: Path, customers: int, events: int, crm_kind: str = "http"
) -> Iterator[Demo]:
    """`loke-sync demo --crm <crm_kind>` on free ports with `workdir` as its working directory;
    SIGINT at exit."""
    web, sandbox, crm = free_port(), free_port(), free_port()
    script = Path(sys.executable).parent / "loke-sync"
    argv = [str(script), "demo", "--port", str(web), "--sandbox-port", str(sandbox),
            "--crm-port", str(crm), "--customers", str(customers), "--rate", "25",
            "--max-events", str(events), "--list-churn-seconds", "0",
            "--quiet-seconds", "0", "--retry-base-seconds", "1", "--crm", crm_kind]  # fmt: skip
    with (workdir / "demo.log").open("wb") as log:
        # Its own session, so the check below sees every process it started, grandchildren too.
        process = subprocess.Popen(argv, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        try:
            yield Demo(process, workdir, web, sandbox, crm)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=40)


def wait_for_match(url: str, events: int, bound: float = BOUND_SECONDS) -> dict[str, Any] | None:
    """The fidelity report once every simulated event was fired and the CRM matches LOKE."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            report: dict[str, Any] = requests.get(url, timeout=5).json()
        except requests.RequestException:
            report = {}
        fired = sum((report.get("sandbox", {}).get("events") or {}).values())
        webhooks = report.get("sandbox", {}).get("webhooks") or {}
        settled = fired >= events and webhooks.get("pending") == 0
        if settled and report.get("matches") and report.get("listsMatch"):
            return report
        time.sleep(1)
    return None


def service_log(workdir: Path) -> str:
    path = workdir / "var" / "demo" / "service.log"
    return "\n--- service.log ---\n" + path.read_text()[-3000:] if path.exists() else ""


def assert_session_gone(demo: Demo) -> None:
    """No process of the demo's session is left: web, worker, beat and their children."""
    assert_group_gone(demo.process.pid)
