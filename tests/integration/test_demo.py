"""`loke-sync demo` on embedded defaults: sandbox, service and CRM (the `http` one, or a fake
HubSpot) converge, then stop cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.support.demo import assert_session_gone, running_demo, service_log, wait_for_match

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

CUSTOMERS = 3000
EVENTS = 150
HUBSPOT_CUSTOMERS = 300  # at HubSpot's pace: 190 requests per 10 s, 0.1-0.4 s each


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


def test_demo_with_hubspot_reaches_hubspot_matches_loke(tmp_path: Path) -> None:
    with running_demo(tmp_path, HUBSPOT_CUSTOMERS, EVENTS, crm_kind="hubspot") as demo:
        report = wait_for_match(demo.fidelity_url, EVENTS)
        page = requests.get(demo.crm_url, timeout=5).text
    output = demo.output()
    assert report is not None, output[-3000:] + service_log(tmp_path)
    customers, orders = report["customers"], report["payments"]
    assert customers["matching"] == customers["loke"] >= HUBSPOT_CUSTOMERS
    assert customers["duplicated"] == customers["extra"] == 0  # the imported contact adopted
    assert customers["conflicts"] == 1  # the two customers sharing one email
    assert orders["matching"] == orders["loke"] > 0  # each with its contact associated
    assert [entry["matches"] for entry in report["lists"]] == [True, True]
    assert report["received"]["unauthorized"] == 0
    assert "HubSpot matches LOKE" in page
    assert demo.process.returncode == 0, output[-3000:]
    assert_session_gone(demo)
