"""`loke-sync demo` in a real browser: the demo CRM's page says the CRM matches LOKE, the service's
dashboard shows the finished backfill; while the CRM is catching up, the page says how far behind
and lists every record that does not match yet, page by page. Writes the demo's screenshots to
artifacts/screenshots/ (demo-crm.png, the README's, and demo-dashboard.png), and to
docs/screenshots/ with UPDATE_DOCS_SCREENSHOTS=1."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from devtools.demo.crm import DemoCrm
from devtools.sandbox.seeding import seed_org
from devtools.sandbox.server import LokeSandbox
from tests.browser.screenshots import keep
from tests.support.demo import assert_session_gone, running_demo, service_log, wait_for_match

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

CUSTOMERS = 1000
EVENTS = 60
ORG = "org-demo"


def test_the_demo_crm_matches_loke_and_the_dashboard_shows_the_finished_backfill(
    page: Page, artifacts: Path, tmp_path: Path
) -> None:
    with running_demo(tmp_path, CUSTOMERS, EVENTS) as demo:
        report = wait_for_match(demo.fidelity_url, EVENTS)
        assert report is not None, demo.output()[-3000:] + service_log(tmp_path)

        page.goto(demo.crm_url)
        # The page reloads itself every 2 s; stop that, so the screenshot is never mid-reload.
        page.evaluate("window.stop()")
        check_crm_page(page, report)
        keep(page, artifacts, "demo-crm.png")

        page.get_by_role("link", name="Service dashboard").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.get_by_label("Admin token").fill(demo.admin_token())
        page.get_by_role("button", name="Sign in").click()
        check_dashboard(page)
        keep(page, artifacts, "demo-dashboard.png")
    output = demo.output()
    assert demo.process.returncode == 0, output[-3000:]
    assert_session_gone(demo)  # web, worker, beat and their children are all gone


def check_crm_page(page: Page, report: dict[str, Any]) -> None:
    customers, payments = report["customers"], report["payments"]
    assert customers["loke"] >= CUSTOMERS  # the backfilled organization
    assert payments["loke"] > 0  # and live events
    verdict = page.locator("#verdict")
    expect(verdict.locator(".badge.ok")).to_have_text("CRM matches LOKE")
    expect(verdict).to_be_visible()
    expect(verdict).to_contain_text(
        f"{customers['matching']:,} of {customers['loke']:,} customers match"
    )
    expect(page.locator("#verdict .badge.running")).to_have_count(0)
    expect(page.locator("#behind")).to_have_count(0)  # nothing behind: not even a list member
    # Customers and payments: all at LOKE are in the CRM and match; none differ, none missing,
    # none the CRM holds that LOKE does not.
    for row, counts in (("customers", customers), ("payments", payments)):
        everywhere = f"{counts['loke']:,}"
        expect(page.locator(f"#fidelity-{row} td")).to_have_text(
            [row.capitalize(), everywhere, everywhere, everywhere, "0", "0", "0"]
        )
        expect(page.locator(f"#fidelity-{row} td.bad")).to_have_count(0)
    for entry in report["lists"]:  # the two opted-in lists, member for member
        members = f"{entry['loke']:,}"
        expect(page.locator(f"#list-{entry['id']} td")).to_have_text(
            [entry["name"], members, members, "0", "0", "same"]
        )
    expect(page.locator("#lists tbody tr")).to_have_count(2)
    arrived = page.locator("#recent tbody tr")
    expect(arrived.first).to_contain_text(re.compile(r"(contact|payment)\.upsert|list\.add"))
    expect(page.locator("#recent")).not_to_contain_text("Nothing yet")
    expect(page.locator("#fidelity")).not_to_contain_text("Not matching yet")


def check_dashboard(page: Page) -> None:
    expect(page.get_by_role("heading", name="Organizations")).to_be_visible()
    row = page.locator(f"#org-{ORG}")
    expect(row).to_contain_text("Harbour Cafe (demo)")
    # The home page refreshes itself while a backfill runs; the locators follow the reloads.
    backfill = row.locator(".progress")
    expect(backfill.locator(".badge")).to_have_text("finished")
    expect(backfill.locator("progress")).to_have_attribute("value", "1")
    expect(backfill.locator("progress")).to_have_accessible_name("backfill finished")
    counted = re.search(r"([\d,]+) customers", backfill.inner_text())
    assert counted is not None, backfill.inner_text()
    assert int(counted.group(1).replace(",", "")) >= CUSTOMERS
    expect(page.locator(".note")).to_have_count(0)  # "A backfill is running" is gone


def test_a_demo_crm_catching_up_says_how_far_behind_and_lists_every_difference_page_by_page(
    page: Page,
) -> None:
    """A CRM the backfill has only begun to fill (no service needed: the state is set here)."""
    sandbox = LokeSandbox("id", "secret")
    lists = seed_org(sandbox, ORG, "Demo", 120, [("VIP guests", 30)], random.Random(2))
    truth = sandbox.snapshot(ORG)
    with DemoCrm("crm-secret-123", sandbox.snapshot, ORG, list(lists.values())) as crm:
        with crm._lock:  # 10 customers delivered, every list member still to come
            for customer in list(truth.customers.values())[:10]:
                contact = {k: v for k, v in customer.items() if k not in ("id", "statistics")}
                crm.contacts[(ORG, customer["id"])] = {
                    "type": "contact.upsert", "customerId": customer["id"], "contact": contact,
                    "statistics": customer["statistics"]}  # fmt: skip
        page.goto(f"{crm.url}/demo/crm")
        expect(page.locator("#verdict .badge.running")).to_have_text("Catching up")
        expect(page.locator("#verdict .badge.ok")).to_have_count(0)
        expect(page.locator("#behind")).to_contain_text(
            "Not matching yet: 110 customers, 0 payments, 30 list members;"
        )
        differences = page.locator("#differences")
        expect(differences.get_by_role("heading")).to_have_text("Not matching yet: 140 records")
        expect(differences.locator("th")).to_have_text(
            ["Record", "LOKE id", "Problem", "Differing fields"]
        )
        shown = 0
        for number, rows in ((1, 50), (2, 50), (3, 40)):
            expect(differences.locator(".pager")).to_contain_text(f"page {number} of 3")
            expect(differences.locator("tbody tr")).to_have_count(rows)
            shown += rows
            back = differences.get_by_role("link", name="Previous")
            expect(back).to_have_count(1 if number > 1 else 0)
            if number < 3:
                differences.get_by_role("link", name="Next").click()
        assert shown == 140
        expect(differences.get_by_role("link", name="Next")).to_have_count(0)
        expect(differences.locator("tbody tr").last).to_contain_text("list member")
        differences.get_by_role("link", name="Previous").click()
        expect(page).to_have_url(re.compile(r"\?page=2$"))
