"""End to end on real parts: gunicorn, two Celery worker processes, beat, PostgreSQL, Redis,
and a recording CRM on 127.0.0.1. A shuffled stream with duplicates must end with the newest
LOKE state at the CRM, with no customer ever going backwards, whatever fault is injected."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from devtools.crm import FakeCrm
from tests.integration.conftest import connect_org, web_url
from tests.support.fake_loke import FakeLoke, post_webhook
from tests.support.processes import Stack
from tests.support.streams import make_stream, mismatches

ORG = "org-e2e"
DRAIN_TIMEOUT = 150


def post_all(url: str, events: list[dict[str, object]], secret: str) -> list[int]:
    """Deliver like LOKE: concurrently, retrying a 5xx (LOKE retries 5 more times)."""

    def deliver(body: dict[str, object]) -> int:
        for attempt in range(6):
            status, _ = post_webhook(url, body, secret)
            if status < 500:
                return status
            time.sleep(0.5 * 2**attempt)
        return status

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(deliver, events))


@pytest.mark.parametrize("fault", ["none", "crm_unavailable", "worker_killed"])
def test_a_shuffled_stream_with_duplicates_reaches_the_crm_as_the_newest_state(
    stack: Stack, loke: FakeLoke, crm: FakeCrm, fault: str
) -> None:
    stack.web(int(stack.env["PORT"]))
    first = stack.worker("w1")
    stack.worker("w2")
    stack.beat()
    secret = connect_org(stack, loke, crm, ORG, batchSize=50)
    stream = make_stream(ORG, customers=300)
    assert len(stream.events) > 3000
    url = f"{web_url(stack)}/webhooks/loke/{ORG}"

    if fault == "crm_unavailable":
        crm.fail_for(6, status=503)
    half = len(stream.events) // 2
    statuses = post_all(url, stream.events[:half], secret)
    if fault == "worker_killed":
        first.kill()
    statuses += post_all(url, stream.events[half:], secret)
    assert set(statuses) == {202}

    def matches(c: FakeCrm) -> bool:
        return not mismatches(stream.truth, ORG, c.contacts, c.payments)

    done = crm.wait_for(matches, timeout=DRAIN_TIMEOUT)
    problems = mismatches(stream.truth, ORG, crm.contacts, crm.payments)
    assert done, f"{len(problems)} differences, first: {problems[:5]}\n" + "\n".join(
        s.log_tail(15) for s in stack.services
    )
    assert crm.violations() == []
    if fault == "crm_unavailable":
        assert any(status == 503 for _, status, _ in crm.answered)
    status = requests.get(
        f"{web_url(stack)}/api/orgs/{ORG}",
        headers={"Authorization": f"Bearer {stack.env['ADMIN_TOKEN']}"},
        timeout=5,
    ).json()
    assert status["delivery"]["deadLetters"] == 0


def test_events_whose_tasks_the_broker_lost_are_swept_and_delivered(
    stack: Stack, loke: FakeLoke, crm: FakeCrm, redis_url: str
) -> None:
    stack.web(int(stack.env["PORT"]))
    secret = connect_org(stack, loke, crm, ORG)
    stream = make_stream(ORG, customers=40, duplicate_ratio=0)
    assert set(post_all(f"{web_url(stack)}/webhooks/loke/{ORG}", stream.events, secret)) == {202}
    redis.Redis.from_url(redis_url).flushdb()  # every queued task is gone; the inbox is not
    stack.worker("w1")
    stack.beat()

    def matches(c: FakeCrm) -> bool:
        return not mismatches(stream.truth, ORG, c.contacts, c.payments)

    assert crm.wait_for(matches, timeout=60), mismatches(
        stream.truth, ORG, crm.contacts, crm.payments
    )[:5]
    assert crm.violations() == []
