"""The demo's verdict and its fidelity view: "CRM matches LOKE" only when customers, payments and
list members all match, otherwise "catching up" with how far behind; every difference listed, a
page at a time, under named columns, the count and the list agreeing. Both demo CRMs (the `http`
one and the fake HubSpot); no database is involved, so no store to parametrize."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest
import requests

from devtools.demo import fidelity, hubspot_fidelity, page
from devtools.demo.crm import DemoCrm
from devtools.demo.verdict import Convergence, status_line
from devtools.sandbox.payloads import make_payment
from devtools.sandbox.seeding import seed_org
from devtools.sandbox.server import LokeSandbox
from devtools.sandbox.state import OrgSnapshot

pytestmark = pytest.mark.timeout(60)

ORG = "org-verdict"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PREFIX = "LOKE: "
FIRED = {"fired": 7}


def world(customers: int, list_size: int, payments: int = 1) -> tuple[LokeSandbox, str]:
    """An unstarted sandbox holding one organization, one list and a few customers' payments."""
    sandbox = LokeSandbox("id", "secret")
    lists = seed_org(sandbox, ORG, "Demo", customers, [("VIP", list_size)], random.Random(4))
    people = list(sandbox.snapshot(ORG).customers.values())
    for n in range(payments):
        sandbox.upsert_payment(ORG, make_payment(f"pay-{n}", people[n], T0))
    return sandbox, lists["VIP"]


def contact_op(customer: dict[str, Any]) -> dict[str, Any]:
    contact = {k: v for k, v in customer.items() if k not in ("id", "statistics")}
    return {"type": "contact.upsert", "customerId": customer["id"], "contact": contact,
            "statistics": customer["statistics"]}  # fmt: skip


def payment_op(payment: dict[str, Any]) -> dict[str, Any]:
    return {"type": "payment.upsert", "paymentId": payment["id"],
            "customerId": payment["customer"]["id"], "status": "completed",
            "total": payment["total"]}  # fmt: skip


def http_report(truth: OrgSnapshot, list_id: str, members: set[str]) -> dict[str, Any]:
    """Every customer and payment delivered as LOKE has them; `members` in the list."""
    contacts = {cid: contact_op(c) for cid, c in truth.customers.items()}
    payments = {pid: payment_op(p) for pid, p in truth.payments.items()}
    return fidelity.compare(truth, contacts, payments, {list_id: members}, [list_id])


# -- the verdict ------------------------------------------------------------------------------
def test_a_crm_whose_list_lacks_a_member_is_catching_up_not_matching_loke() -> None:
    sandbox, list_id = world(customers=5, list_size=2)
    truth = sandbox.snapshot(ORG)
    members = sorted(truth.lists[list_id][1])
    report = http_report(truth, list_id, {members[0]})
    assert report["customers"]["matching"] == 5
    assert report["payments"]["matching"] == 1
    assert report["matches"] is False
    assert report["behind"] == {"customers": 0, "payments": 0, "listMembers": 1}
    line = status_line("CRM", Convergence(clock=lambda: 0.0).observe(report), FIRED, "12:00:00")
    assert "matches LOKE" not in line
    assert line == (
        "12:00:00 catching up: 0 customers, 0 payments, 1 list member not matching yet;"
        " not matched in the 0 s since the start · webhooks fired 7"
    )

    report = http_report(truth, list_id, set(members))
    assert report["matches"] is True
    line = status_line("CRM", Convergence(clock=lambda: 0.0).observe(report), FIRED, "12:00:05")
    assert line == (
        "12:00:05 CRM matches LOKE: customers 5 · payments 1 · list members 2 · webhooks fired 7"
    )


def hubspot_contact(record_id: str, customer: dict[str, Any]) -> dict[str, Any]:
    """The contact the README's HubSpot mapping makes of `customer`."""
    stats = customer.get("statistics") or {}
    properties = {
        "loke_customer_id": customer["id"],
        "email": customer.get("email"),
        "firstname": customer.get("firstName"),
        "lastname": customer.get("lastName"),
        "phone": customer.get("phoneNumber"),
        "loke_marketing_opt_in": "true" if customer.get("hasAgreedToMarketing") else "false",
        "loke_updated_at": customer.get("updatedAt"),
        "loke_total_spend": f"{(stats.get('totalSpend') or 0) / 100:.2f}",
        "loke_points_balance": str(stats.get("pointsBalance") or 0),
    }
    return {"id": record_id, "properties": {k: v for k, v in properties.items() if v is not None}}


def hubspot_holdings(
    truth: OrgSnapshot, list_id: str, members: set[str]
) -> hubspot_fidelity.Holdings:
    """A portal holding every customer and payment as LOKE has them; `members` in the list."""
    record_of = {cid: f"c{n}" for n, cid in enumerate(truth.customers)}
    contacts = [hubspot_contact(record_of[cid], c) for cid, c in truth.customers.items()]
    orders: list[dict[str, Any]] = []
    links: set[tuple[str, str]] = set()
    for n, (payment_id, payment) in enumerate(truth.payments.items()):
        total = f"{payment['total'] / 100:.2f}"
        orders.append({"id": f"o{n}", "properties": {"loke_payment_id": payment_id,
                       "loke_payment_status": "completed", "hs_total_price": total}})  # fmt: skip
        links.add((f"o{n}", record_of[payment["customer"]["id"]]))
    in_list = {PREFIX + truth.lists[list_id][0]: {record_of[m] for m in members}}
    return hubspot_fidelity.Holdings(contacts, orders, links, in_list)


def test_a_hubspot_portal_whose_list_lacks_a_member_is_catching_up_not_matching_loke() -> None:
    sandbox, list_id = world(customers=5, list_size=2)
    truth = sandbox.snapshot(ORG)
    members = sorted(truth.lists[list_id][1])
    held = hubspot_holdings(truth, list_id, {members[0]})
    report = hubspot_fidelity.compare(truth, held, [list_id], PREFIX)
    assert report["customers"]["matching"] == 5, report["differences"]
    assert report["payments"]["matching"] == 1, report["differences"]
    assert report["matches"] is False
    assert report["behind"] == {"customers": 0, "payments": 0, "listMembers": 1}

    held = hubspot_holdings(truth, list_id, set(members))
    assert hubspot_fidelity.compare(truth, held, [list_id], PREFIX)["matches"] is True


def test_catching_up_says_for_how_long_the_crm_has_not_matched() -> None:
    now = [100.0]
    convergence = Convergence(clock=lambda: now[0])
    behind = {"customers": 3, "payments": 0, "listMembers": 0}
    catching_up = {"matches": False, "behind": behind}
    now[0] = 130.0
    seen = convergence.observe(catching_up)["behind"]
    assert seen == {**behind, "seconds": 30, "since": "start"}
    now[0] = 140.0
    matching = {"matches": True, "behind": dict.fromkeys(behind, 0)}
    assert convergence.observe(matching)["behind"]["seconds"] == 0
    now[0] = 147.0
    seen = convergence.observe(catching_up)["behind"]
    assert (seen["seconds"], seen["since"]) == (7, "last match")


# -- the fidelity view: every difference, paged, every column named ---------------------------
class Tables(HTMLParser):
    """Each <table>: its header cells' texts and, per body row, how many columns it spans."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, Any]] = []
        self._in: list[str] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append({"headers": [], "rows": []})
        elif tag == "tr" and "tbody" in self._in:
            self.tables[-1]["rows"].append(0)
        elif tag == "td":
            self.tables[-1]["rows"][-1] += int(dict(attrs).get("colspan") or 1)
        elif tag == "th":
            self._text = []
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "th":
            self.tables[-1]["headers"].append("".join(self._text).strip())
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        self._text.append(data)


def tables_of(html: str) -> list[dict[str, Any]]:
    parser = Tables()
    parser.feed(html)
    return parser.tables


def assert_every_column_named(html: str) -> None:
    for table in tables_of(html):
        assert table["headers"], table
        assert all(table["headers"]), table
        assert all(cells == len(table["headers"]) for cells in table["rows"]), table


def test_the_fidelity_view_lists_every_difference_a_page_at_a_time_under_named_columns() -> None:
    sandbox, list_id = world(customers=120, list_size=30, payments=3)
    truth = sandbox.snapshot(ORG)
    people = list(truth.customers.values())
    with DemoCrm("crm-secret-123", sandbox.snapshot, ORG, [list_id]) as crm:
        with crm._lock:  # what a few batches would have left: 10 contacts, 3 of them wrong
            for n, customer in enumerate(people[:10]):
                wrong = {"firstName": "Not the truth"} if n < 3 else {}
                crm.contacts[(ORG, customer["id"])] = contact_op({**customer, **wrong})
            crm.contacts[(ORG, "cust-unknown")] = contact_op({**people[0], "id": "cust-unknown"})
            held = [*sorted(truth.lists[list_id][1])[:4], "cust-unknown"]
            crm.list_members[(ORG, list_id)] = set(held)
        first = requests.get(f"{crm.url}/demo/crm/fidelity.json", timeout=5).json()
        c, p, lists = first["customers"], first["payments"], first["lists"]
        in_lists = sum(entry["missing"] + entry["extra"] for entry in lists)
        counted = (c["differing"] + c["missing"] + c["extra"] + p["differing"] + p["missing"]
                   + p["extra"] + in_lists)  # fmt: skip
        assert (c["differing"], c["missing"], c["extra"]) == (3, 110, 1)
        assert counted == 110 + 3 + 1 + 3 + 26 + 1
        behind = {k: first["behind"][k] for k in ("customers", "payments", "listMembers")}
        assert behind == {"customers": 114, "payments": 3, "listMembers": 27}
        paging = first["differences"]
        assert (paging["total"], paging["pages"], paging["page"]) == (counted, 3, 1)

        listed: list[dict[str, Any]] = []
        rows = 0
        for number in range(1, paging["pages"] + 1):
            url = f"{crm.url}/demo/crm/fidelity.json?page={number}"
            listed += requests.get(url, timeout=5).json()["differences"]["items"]
            html = requests.get(f"{crm.url}/demo/crm?page={number}", timeout=5).text
            assert_every_column_named(html)
            table = tables_of(html[html.index('id="differences"') :])[0]
            assert table["headers"] == ["Record", "LOKE id", "Problem", "Differing fields"]
            rows += len(table["rows"])
            assert ('rel="prev"' in html) == (number > 1)
            assert ('rel="next"' in html) == (number < paging["pages"])
        assert rows == len(listed) == counted
        assert len({(e["record"], e["id"], e["problem"]) for e in listed}) == counted
        assert {"record": "customer", "id": people[1]["id"], "problem": "differs",
                "fields": ["firstName"]} in listed  # fmt: skip

        for asked, shown in (("abc", 1), ("0", 1), ("99", 3), ("9" * 5000, 1)):
            got = requests.get(f"{crm.url}/demo/crm/fidelity.json?page={asked}", timeout=5).json()
            assert got["differences"]["page"] == shown


def test_the_hubspot_fidelity_view_lists_every_difference_under_named_columns() -> None:
    sandbox, list_id = world(customers=60, list_size=10, payments=2)
    truth = sandbox.snapshot(ORG)
    full = hubspot_holdings(truth, list_id, set(truth.lists[list_id][1]))
    unknown = hubspot_contact("c-unknown", {"id": "cust-unknown", "email": "x@example.com"})
    held = hubspot_fidelity.Holdings([*full.contacts[:6], unknown], [], set(), {})
    report = Convergence().observe(hubspot_fidelity.compare(truth, held, [list_id], PREFIX))
    c, p = report["customers"], report["payments"]
    counted = (c["differing"] + c["missing"] + c["duplicated"] + c["extra"] + p["differing"]
               + p["missing"] + p["duplicated"] + p["extra"]
               + sum(entry["missing"] + entry["extra"] for entry in report["lists"]))  # fmt: skip
    assert counted == len(report["differences"]) == 54 + 1 + 2 + 10
    for number in (1, 2):
        shown = {**report, "received": {"total": 0, "maxInWindow": 0, "allowance": 190,
                 "byStatus": {}, "byRoute": {}},
                 "differences": page.paged(report["differences"], str(number))}  # fmt: skip
        html = page.render(shown, [], {}, "demo_hubspot.html")
        assert_every_column_named(html)
        assert f"Not matching yet: {counted} records" in html
