"""Logs: one JSON object per line from web, worker and beat; a webhook's request id can be
followed from the receiver to the delivery; no secret, token or customer record appears."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import requests

from devtools.crm import FakeCrm
from tests.conftest import ADMIN_TOKEN, CRM_SECRET, LOKE_CLIENT_SECRET, SECRET_KEY
from tests.integration.conftest import connect_org, web_url
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, sign
from tests.support.processes import Stack
from tests.support.streams import make_stream, mismatches

ORG = "org-logs"


def log_lines(stack: Stack) -> dict[str, list[str]]:
    return {
        service.name: Path(service.log_path).read_text().splitlines() for service in stack.services
    }


def test_logs_are_json_lines_that_trace_a_webhook_and_never_carry_secrets(
    stack: Stack, loke: FakeLoke, crm: FakeCrm
) -> None:
    stack.web(int(stack.env["PORT"]))
    stack.worker("w1")
    stack.beat()
    secret = connect_org(stack, loke, crm, ORG)
    stream = make_stream(ORG, customers=15, duplicate_ratio=0)

    def post(event: dict[str, object]) -> str:
        body = json.dumps(event, separators=(",", ":")).encode()
        answer = requests.post(
            f"{web_url(stack)}/webhooks/loke/{ORG}",
            data=body,
            headers={"X-Event-Signature": sign(body, secret), "Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 202
        return answer.headers["X-Request-Id"]

    for event in stream.events:
        post(event)
    assert crm.wait_for(
        lambda c: not mismatches(stream.truth, ORG, c.contacts, c.payments), timeout=60
    )
    # One more change, the newest for its customer: its request id must reach the delivery.
    # (Older changes coalesced into it are named where they were applied.)
    later = make_customer("CUST000003", dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    traced = post(customer_event("customer.updated", ORG, later))
    assert crm.wait_for(
        lambda c: c.contacts[(ORG, "CUST000003")]["contact"]["updatedAt"].startswith("2027"),
        timeout=30,
    )
    # The worker writes its "delivered" line after the CRM has answered: give it a moment.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if any(traced in line and "delivered batch" in line for line in log_lines(stack)["w1"]):
            break
        time.sleep(0.2)
    lines = log_lines(stack)
    records = []
    for name, text in lines.items():
        for line in text:
            if line.strip():
                try:
                    record = json.loads(line)  # every line is one JSON object
                except ValueError:
                    raise AssertionError(f"{name}: not a JSON line: {line!r}") from None
                assert {"time", "level", "logger", "message"} <= set(record), (name, line)
                records.append(record)
    assert {"web", "w1", "beat"} <= {n.split("-")[0] for n in lines}

    # The request id of that webhook reappears where it was applied and where it was delivered.
    applied = [
        r for r in records if traced in r.get("request_ids", []) and "applied" in r["message"]
    ]
    delivered = [
        r for r in records if traced in r.get("request_ids", []) and "delivered" in r["message"]
    ]
    assert applied
    assert delivered
    assert delivered[0]["org_id"] == ORG
    assert delivered[0]["task_id"]

    everything = "\n".join(line for text in lines.values() for line in text)
    secrets = {ADMIN_TOKEN, SECRET_KEY, LOKE_CLIENT_SECRET, CRM_SECRET, secret}
    secrets |= set(loke.issued_tokens())
    for value in secrets:
        assert value not in everything
    for event in stream.events:
        customer = event.get("customer") or {}
        for field in ("email", "phoneNumber", "lastName"):
            if customer.get(field):
                assert customer[field] not in everything, field
