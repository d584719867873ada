"""The Celery dispatcher says a broker it cannot reach is down in the app's own terms, so that
plain code (the page tasks' crash counting) can tell an outage from a crash without kombu."""

from __future__ import annotations

import socket

import pytest
from celery import Celery

from app.core.broker import CeleryDispatcher
from app.core.dispatch import BrokerUnavailable


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once it is closed


def test_a_broker_out_of_reach_raises_broker_unavailable_naming_the_task() -> None:
    dispatcher = CeleryDispatcher(Celery(broker=f"redis://127.0.0.1:{closed_port()}/0"))
    with pytest.raises(BrokerUnavailable, match=r"^lists\.stage not sent: "):
        dispatcher.send("lists.stage", (1, 0))
