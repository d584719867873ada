"""`loke-sync demo` on embedded defaults: sandbox, service and CRM converge, then stop cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

CUSTOMERS = 3000
EVENTS = 150
BOUND_SECONDS = 60


def test_demo_reaches_crm_matches_loke_and_leaves_no_process_behind(tmp_path: Path) -> None:
    web, sandbox, crm = free_port(), free_port(), free_port()
    script = Path(sys.executable).parent / "loke-sync"
    argv = [str(script), "demo", "--port", str(web), "--sandbox-port", str(sandbox),
            "--crm-port", str(crm), "--customers", str(CUSTOMERS), "--rate", "25",
            "--max-events", str(EVENTS), "--list-churn-seconds", "0",
            "--quiet-seconds", "0", "--retry-base-seconds", "1"]  # fmt: skip
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        # Its own session, so the check below sees every process it started, grandchildren too.
        process = subprocess.Popen(argv, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        try:
            report = wait_for_match(f"http://127.0.0.1:{crm}/demo/crm/fidelity.json")
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=40)
    output = log_path.read_text()
    assert report is not None, output[-3000:] + service_log(tmp_path)
    assert report["customers"]["loke"] >= CUSTOMERS
    assert report["customers"]["matching"] == report["customers"]["loke"]
    assert report["payments"]["matching"] == report["payments"]["loke"] > 0  # live events
    assert [entry["matches"] for entry in report["lists"]] == [True, True]
    assert report["received"]["refused"] == 0
    assert process.returncode == 0, output[-3000:]
    assert f"http://127.0.0.1:{web}/" in output  # the dashboard URL was printed
    assert f"http://127.0.0.1:{crm}/demo/crm" in output
    assert (tmp_path / "var" / "demo" / "loke-sync.sqlite").exists()  # embedded: no servers
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # web, worker, beat and their children are all gone


def wait_for_match(url: str) -> dict[str, Any] | None:
    """The fidelity report once every simulated event was fired and the CRM matches LOKE."""
    deadline = time.monotonic() + BOUND_SECONDS
    while time.monotonic() < deadline:
        try:
            report: dict[str, Any] = requests.get(url, timeout=5).json()
        except requests.RequestException:
            report = {}
        events = sum((report.get("sandbox", {}).get("events") or {}).values())
        webhooks = report.get("sandbox", {}).get("webhooks") or {}
        settled = events >= EVENTS and webhooks.get("pending") == 0
        if settled and report.get("matches") and report.get("listsMatch"):
            return report
        time.sleep(1)
    return None


def service_log(workdir: Path) -> str:
    path = workdir / "var" / "demo" / "service.log"
    return "\n--- service.log ---\n" + path.read_text()[-3000:] if path.exists() else ""
