"""/metrics parses with prometheus-client's own parser and moves when events flow through real
workers (whose metrics reach the web process through the multiprocess directory)."""

from __future__ import annotations

import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from devtools.crm import FakeCrm
from tests.integration.conftest import connect_org, web_url
from tests.support.fake_loke import FakeLoke, post_webhook
from tests.support.processes import Stack
from tests.support.streams import make_stream, mismatches

ORG = "org-metrics"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(stack: Stack) -> Samples:
    answer = requests.get(f"{web_url(stack)}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def test_metrics_parse_and_move_when_events_flow_through_real_workers(
    stack: Stack, loke: FakeLoke, crm: FakeCrm
) -> None:
    stack.web(int(stack.env["PORT"]))
    stack.worker("w1")
    secret = connect_org(stack, loke, crm, ORG)
    before = scrape(stack)
    stream = make_stream(ORG, customers=20, duplicate_ratio=0)
    for event in stream.events:
        assert post_webhook(f"{web_url(stack)}/webhooks/loke/{ORG}", event, secret)[0] == 202
    post_webhook(f"{web_url(stack)}/webhooks/loke/{ORG}", stream.events[0], secret)  # duplicate
    assert crm.wait_for(
        lambda c: not mismatches(stream.truth, ORG, c.contacts, c.payments), timeout=60
    )
    # Delivery is counted once the CRM has answered: poll briefly rather than race it.
    deadline = time.monotonic() + 15
    after = scrape(stack)
    while (
        time.monotonic() < deadline
        and total(
            after, "loke_sync_delivery_operations_total", destination=ORG, type="contact.upsert"
        )
        - total(before, "loke_sync_delivery_operations_total", destination=ORG)
        < 20
    ):
        time.sleep(0.3)
        after = scrape(stack)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    updates = sum(1 for e in stream.events if e["event"] == "customer.updated")
    assert moved("loke_sync_webhooks_total", event_type="customer.updated") == updates
    assert moved("loke_sync_webhooks_total", answer="duplicate") == 1
    # Observed in the worker process, served by the web process:
    assert moved("loke_sync_events_total", outcome="applied") == len(stream.events)
    assert moved("loke_sync_apply_latency_seconds_count", since="arrival") == len(stream.events)
    assert moved("loke_sync_delivery_batches_total", destination=ORG, outcome="delivered") >= 1
    delivered_contacts = moved(
        "loke_sync_delivery_operations_total", destination=ORG, type="contact.upsert"
    )
    assert delivered_contacts >= 20
    assert moved("loke_sync_delivery_latency_seconds_count", since="payload") > 0
    # Shared state, read from the database and the broker at scrape time:
    assert total(after, "loke_sync_inbox_pending") == 0
    assert ("loke_sync_queue_depth", (("queue", "events"),)) in after
    assert total(after, "loke_sync_backfill_customers", destination=ORG) == 0
