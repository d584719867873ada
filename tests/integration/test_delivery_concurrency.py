"""Delivery with several batches in flight, on PostgreSQL with two Celery worker processes and a
CRM slow enough for overlaps to show: no customer is ever in two unanswered batches, and the
allowance of one CRM account is shared by every organization and worker that spends it."""

from __future__ import annotations

from itertools import pairwise

import pytest

from devtools.crm import FakeCrm
from tests.integration.conftest import connect_org, web_url
from tests.integration.test_pipeline import post_all
from tests.support.fake_loke import FakeLoke
from tests.support.processes import Stack
from tests.support.streams import make_stream, mismatches

pytestmark = pytest.mark.integration

IN_FLIGHT = 4


def test_batches_of_one_org_go_out_side_by_side_and_never_share_a_customer(
    stack: Stack, loke: FakeLoke, crm: FakeCrm
) -> None:
    stack.web(int(stack.env["PORT"]))
    stack.workers(["w1", "w2"])
    crm.delay(0.15, up_to=0.3)
    secret = connect_org(stack, loke, crm, "org-side", batchSize=20, maxRequestsPerSecond=1000,
                         maxConcurrentRequests=IN_FLIGHT)  # fmt: skip
    stream = make_stream("org-side", customers=200)
    most = 0

    def overlapping(c: FakeCrm) -> bool:
        nonlocal most
        most = max(most, len({b for ids in c.in_flight().values() for b in ids}))
        return not mismatches(stream.truth, "org-side", c.contacts, c.payments)

    assert set(post_all(f"{web_url(stack)}/webhooks/loke/org-side", stream.events, secret)) == {202}
    assert crm.wait_for(overlapping, timeout=120, interval=0.01)
    assert crm.violations() == []  # no customer in two unanswered batches, none went back
    assert 1 < most <= IN_FLIGHT


def test_two_organizations_on_one_crm_account_share_its_allowance_across_workers(
    stack: Stack, loke: FakeLoke, crm: FakeCrm
) -> None:
    stack.web(int(stack.env["PORT"]))
    stack.workers(["w1", "w2"])
    crm.delay(0.05, up_to=0.1)
    streams = {}
    for org in ("org-one", "org-two"):
        limits = {"maxRequestsPerSecond": 5, "maxConcurrentRequests": IN_FLIGHT}
        secret = connect_org(stack, loke, crm, org, batchSize=10, rateLimitKey="one", **limits)
        streams[org] = make_stream(org, customers=25, duplicate_ratio=0, stats_per_customer=0,
                                   payments_per_customer=0, updates_per_customer=0)  # fmt: skip
        assert set(post_all(f"{web_url(stack)}/webhooks/loke/{org}", streams[org].events,
                            secret)) == {202}  # fmt: skip

    def delivered(c: FakeCrm) -> bool:
        return all(not mismatches(s.truth, org, c.contacts, c.payments) for org, s in
                   streams.items())  # fmt: skip

    assert crm.wait_for(delivered, timeout=60)
    arrivals = sorted(crm.arrived)
    assert len(arrivals) >= 6
    # Five requests a second for the account, whoever sends them: any six in a row span at
    # least five intervals (a little less for the clocks of two processes).
    spans = [last - first for first, last in zip(arrivals, arrivals[5:], strict=False)]
    assert min(spans) >= 5 * 0.2 * 0.9, spans
    assert all(b >= a for a, b in pairwise(arrivals))
    assert crm.violations() == []
