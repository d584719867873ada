"""The customer search and the dead-letter filters in a real browser on the real stack: a customer
found from the header's box by id and by email (any case), one not found; dead letters narrowed
to an organization and a reason, and the waiting ones shown replayed at once to the CRM.
Screenshots: artifacts/screenshots/customer.png and dead-letters.png."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

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

ORG, OTHER = "org-search", "org-second"
NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
BAD_EMAIL, LONG_NAME = {"cust-a1", "cust-a2"}, {"cust-b1"}


def wait_for_dead_letters(stack: Stack, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = requests.get(f"{web_url(stack)}/api/dead-letters", headers=AUTH, timeout=5).json()[
            "deadLetters"
        ]
        if len(found) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} dead letters:\n" + stack.services[-1].log_tail(30))


def wait_until_settled(stack: Stack, org: str, customer: str) -> None:
    """Until the service has settled the customer's delivery (the CRM answered, and the answer
    is stored), so its page shows it delivered."""
    url = f"{web_url(stack)}/api/orgs/{org}/customers/{customer}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = requests.get(url, headers=AUTH, timeout=5)
        if answer.status_code == 200 and not any(d["pending"] for d in answer.json()["delivery"]):
            return
        time.sleep(0.2)
    raise AssertionError(f"{customer} was not delivered:\n" + stack.services[-1].log_tail(30))


def find(page: Page, query: str) -> None:
    box = page.get_by_role("searchbox", name="Find a customer")
    box.fill(query)
    box.press("Enter")


def test_an_operator_finds_customers_and_replays_the_dead_letters_a_filter_shows(
    stack: Stack, loke: FakeLoke, crm: FakeCrm, page: Page, artifacts: Path
) -> None:
    stack.web(int(stack.env["PORT"]))
    stack.worker("w1", queues=ALL_QUEUES)
    secrets = {org: connect_org(stack, loke, crm, org) for org in (ORG, OTHER)}
    crm.refuse_records(BAD_EMAIL, reason="invalid email")
    crm.refuse_records(LONG_NAME, reason="name too long")
    people = {"cust-ann": "Ann.Lee@Example.com", **{c: f"{c}@example.com" for c in BAD_EMAIL},
              **{c: f"{c}@example.com" for c in LONG_NAME}}  # fmt: skip
    for customer, email in people.items():
        event = customer_event("customer.created", ORG, make_customer(customer, NOW, email=email))
        assert post_webhook(f"{web_url(stack)}/webhooks/loke/{ORG}", event, secrets[ORG])[0] == 202
    refused = make_customer("cust-o1", NOW)
    crm.refuse_records({"cust-o1"}, reason="invalid email")
    event = customer_event("customer.created", OTHER, refused)
    assert post_webhook(f"{web_url(stack)}/webhooks/loke/{OTHER}", event, secrets[OTHER])[0] == 202
    wait_until_settled(stack, ORG, "cust-ann")
    wait_for_dead_letters(stack, 4)

    page.goto(web_url(stack) + "/")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()

    # By id: the customer's page, with what was delivered.
    find(page, "cust-ann")
    expect(page.locator("#customer-name")).to_contain_text("Customer st-ann")
    expect(page.locator("#profile")).to_contain_text("Ann.Lee@Example.com")
    expect(page.locator("#deliveries")).to_contain_text("delivered")
    expect(page.locator("#pending")).to_contain_text("Nothing waits")
    # By email, in another case.
    find(page, "ann.lee@EXAMPLE.com")
    expect(page).to_have_url(f"{web_url(stack)}/orgs/{ORG}/customers/cust-ann")
    # A refused customer: its dead letter is on its page.
    find(page, "cust-a1@example.com")
    expect(page.locator("#customer-dead-letters")).to_contain_text("invalid email")
    keep(page, artifacts, "customer.png")
    # Nobody.
    find(page, "nobody@example.com")
    expect(page.locator("#no-match")).to_contain_text("No customer matches nobody@example.com")

    # Dead letters: ORG's whose reason says "email"; the other organization's stay put.
    page.get_by_role("link", name="Dead letters").click()
    expect(page.locator("#dead-letter-counts")).to_contain_text("4 dead letters match")
    filters = page.locator("#dead-letter-filters")
    filters.get_by_label("Organization").select_option(ORG)
    filters.get_by_label("Reason contains").fill("EMAIL")
    filters.get_by_role("button", name="Filter").click()
    expect(page.locator("#dead-letter-counts")).to_contain_text("2 dead letters match")
    expect(page.locator("tbody tr")).to_have_count(2)
    keep(page, artifacts, "dead-letters.png")
    crm.reset()  # the CRM takes everyone now
    page.get_by_role("button", name="Replay the 2 waiting that match").click()
    expect(page.get_by_role("status")).to_contain_text("2 dead letters are being replayed")
    expect(page.locator("#dead-letter-counts")).to_contain_text("0 waiting")
    assert crm.wait_for(lambda c: {(ORG, x) for x in BAD_EMAIL} <= c.contacts.keys(), timeout=30)
    assert (ORG, "cust-b1") not in crm.contacts
    assert (OTHER, "cust-o1") not in crm.contacts
    page.get_by_role("link", name="Clear").click()
    expect(page.locator("#dead-letter-counts")).to_contain_text("2 waiting")
