"""The dashboard in a real browser on the real stack: sign in (the page says where the token is),
see a connected organization with its backfill progress, replay a dead letter and see it reach
the CRM. Screenshots are kept under artifacts/screenshots/; the README's dashboard.png and
org.png are these (UPDATE_DOCS_SCREENSHOTS=1 writes them to docs/screenshots/)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from app.core.queues import ALL_QUEUES
from devtools.crm import FakeCrm
from tests.browser.screenshots import keep
from tests.conftest import ADMIN_TOKEN, AUTH
from tests.integration.conftest import connect_org, web_url
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, post_webhook
from tests.support.processes import Stack

pytestmark = pytest.mark.integration

ORG = "org-browser"
POISON = "cust-poison"
NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def wait_for_dead_letter(stack: Stack) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = requests.get(
            f"{web_url(stack)}/api/dead-letters", params={"orgId": ORG}, headers=AUTH, timeout=5
        ).json()["deadLetters"]
        if found:
            letter: dict[str, Any] = found[0]
            return letter
        time.sleep(0.2)
    raise AssertionError("no dead letter appeared:\n" + stack.services[-1].log_tail(30))


def test_an_operator_signs_in_sees_progress_and_replays_a_dead_letter_to_the_crm(
    stack: Stack, loke: FakeLoke, crm: FakeCrm, page: Page, artifacts: Path
) -> None:
    stack.web(int(stack.env["PORT"]))
    stack.worker("w1", queues=ALL_QUEUES)
    loke.add_org(ORG, "Harbour Cafe")
    customers = [make_customer(f"cust-{i:03d}", NOW) for i in range(40)]
    loke.set_customers(ORG, customers)
    loke.set_list(ORG, "list-vip", "VIP guests", [c["id"] for c in customers[:5]])
    secret = connect_org(stack, loke, crm, ORG)
    # The backfill reaches the CRM first, so the poison batch carries nobody else.
    assert crm.wait_for(lambda c: len(c.contacts) == len(customers), timeout=60)

    crm.reject_customer(POISON)
    event = customer_event("customer.created", ORG, make_customer(POISON, NOW))
    assert post_webhook(f"{web_url(stack)}/webhooks/loke/{ORG}", event, secret)[0] == 202
    letter = wait_for_dead_letter(stack)
    crm.reset()  # the CRM takes the customer now

    shots = artifacts / "screenshots"
    shots.mkdir(exist_ok=True)
    page.goto(web_url(stack) + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # The stack runs on PostgreSQL and Redis: the token is the environment's, not a file's.
    expect(page.locator("#token-hint")).to_contain_text("ADMIN_TOKEN environment variable")
    page.get_by_label("Admin token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not the admin token")
    page.screenshot(path=str(shots / "signin.png"))
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()

    row = page.locator(f"#org-{ORG}")
    expect(row).to_contain_text("finished")
    expect(row).to_contain_text(f"{len(customers)} customers")
    expect(row.locator("progress")).to_have_attribute("value", "1")
    keep(page, artifacts, "dashboard.png")

    row.get_by_role("link", name=ORG).click()
    dead = page.locator(f"#dead-letter-{letter['id']}")
    expect(dead).to_contain_text("refused")
    expect(page.locator("#list-list-vip")).to_contain_text("VIP guests")
    dead.get_by_role("button", name="Replay").click()

    expect(page.get_by_role("status")).to_contain_text(f"Dead letter {letter['id']} is being")
    assert crm.wait_for(lambda c: (ORG, POISON) in c.contacts, timeout=30)
    page.reload()
    expect(page.locator(f"#dead-letter-{letter['id']}")).to_contain_text("replayed")
    keep(page, artifacts, "org.png")
