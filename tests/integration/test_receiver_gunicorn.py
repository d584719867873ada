"""The receiver's contract table once more, through a real gunicorn on PostgreSQL and Redis."""

from __future__ import annotations

import datetime as dt
import time

import psycopg
import requests

from devtools.crm import FakeCrm
from tests.integration.conftest import connect_org, web_url
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, post_webhook, sign
from tests.support.processes import Stack, free_port

ORG = "org-gunicorn"
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def inbox_count(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT count(*) FROM inbox").fetchone()
        assert row is not None
        return int(row[0])


def test_every_row_of_the_receiver_table_through_gunicorn(
    stack: Stack, loke: FakeLoke, crm: FakeCrm, database_url: str
) -> None:
    stack.web(int(stack.env["PORT"]))
    secret = connect_org(stack, loke, crm, ORG)
    url = f"{web_url(stack)}/webhooks/loke/{ORG}"
    event = customer_event("customer.created", ORG, make_customer("C1", NOW))

    assert post_webhook(url, event, secret) == (202, {"status": "accepted"})
    assert post_webhook(url, event, secret) == (202, {"status": "duplicate"})
    order = {"event": "order.created", "order": {}, "organization": {"id": ORG}}
    assert post_webhook(url, order, secret) == (202, {"status": "ignored"})
    assert post_webhook(url, dict(event, extra=1), None)[0] == 401
    assert post_webhook(url, dict(event, extra=2), "not-the-secret")[0] == 401
    other = f"{web_url(stack)}/webhooks/loke/not-connected"
    assert post_webhook(other, event, secret)[0] == 404
    assert post_webhook(url, b"{not json", secret)[0] == 400
    assert post_webhook(url, dict(event, organization={"id": "x"}), secret)[0] == 400
    huge = dict(event, padding="x" * (1024 * 1024))
    status, answer = post_webhook(url, huge, secret)
    assert status == 413
    assert answer["error"]["code"]
    assert inbox_count(database_url) == 2  # the accepted event and the ignored one

    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("ALTER TABLE inbox RENAME TO inbox_away")
    try:
        fresh = customer_event("customer.updated", ORG, make_customer("C2", NOW))
        status, answer = post_webhook(url, fresh, secret)
        assert status == 503
        assert answer["error"]["code"] == "unavailable"
    finally:
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("ALTER TABLE inbox_away RENAME TO inbox")


def test_a_receiver_whose_queue_is_down_answers_503_and_keeps_the_event(
    stack: Stack, loke: FakeLoke, crm: FakeCrm, database_url: str
) -> None:
    stack.web(int(stack.env["PORT"]))
    secret = connect_org(stack, loke, crm, ORG)
    dead_port = free_port()  # nothing listens here
    broken = Stack(
        {
            **stack.env,
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{dead_port}/0",
            "REDIS_URL": f"redis://127.0.0.1:{dead_port}/0",
        },
        stack.log_dir,
    )
    port = free_port()
    broken.web(port)
    try:
        broken_url = f"http://127.0.0.1:{port}/webhooks/loke/{ORG}"
        # The first events are stored and acknowledged while their kick fails in the
        # background; from then on each new event is stored and answered 503.
        statuses: list[int] = []
        deadline = time.monotonic() + 10
        while 503 not in statuses and time.monotonic() < deadline:
            body = customer_event("customer.created", ORG, make_customer(f"C{len(statuses)}", NOW))
            statuses.append(post_webhook(broken_url, body, secret)[0])
            time.sleep(0.1)
        assert statuses[-1] == 503
        assert set(statuses) == {202, 503}
        assert inbox_count(database_url) == len(statuses)  # all kept: the sweeper enqueues them
        ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"] == "unavailable"
        # LOKE retries the 5xx against a healthy receiver: acknowledged as a duplicate.
        assert post_webhook(f"{web_url(stack)}/webhooks/loke/{ORG}", body, secret) == (
            202,
            {"status": "duplicate"},
        )
        assert sign(b"x", secret).startswith("sha256=")
    finally:
        broken.stop_all()
