"""`loke-sync demo` on embedded defaults: sandbox, service and CRM converge, then stop cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.demo import assert_session_gone, running_demo, service_log, wait_for_match

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

CUSTOMERS = 3000
EVENTS = 150


def test_demo_reaches_crm_matches_loke_and_leaves_no_process_behind(tmp_path: Path) -> None:
    with running_demo(tmp_path, CUSTOMERS, EVENTS) as demo:
        report = wait_for_match(demo.fidelity_url, EVENTS)
    output = demo.output()
    assert report is not None, output[-3000:] + service_log(tmp_path)
    assert report["customers"]["loke"] >= CUSTOMERS
    assert report["customers"]["matching"] == report["customers"]["loke"]
    assert report["payments"]["matching"] == report["payments"]["loke"] > 0  # live events
    assert [entry["matches"] for entry in report["lists"]] == [True, True]
    assert report["received"]["refused"] == 0
    assert demo.process.returncode == 0, output[-3000:]
    assert f"{demo.web_url}/" in output  # the dashboard URL was printed
    assert demo.crm_url in output
    assert (tmp_path / "var" / "demo" / "loke-sync.sqlite").exists()  # embedded: no servers
    assert_session_gone(demo)  # web, worker, beat and their children are all gone
